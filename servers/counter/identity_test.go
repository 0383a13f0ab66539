package counter

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestViewerAddr(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		peer    string
		xff     []string // one element per header line
		cf      string
		trusted trust
		want    string
	}{
		{"no proxies configured: peer", "198.51.100.1", []string{"203.0.113.9"}, "203.0.113.8", nil, "198.51.100.1"},
		{"spoofed XFF from an untrusted peer is ignored", "198.51.100.1", []string{"203.0.113.9"}, "", trusted, "198.51.100.1"},
		{"spoofed CF-Connecting-IP from an untrusted peer is ignored", "198.51.100.1", nil, "203.0.113.9", trusted, "198.51.100.1"},
		{"trusted proxy, no headers: the proxy itself", "10.1.2.3", nil, "", trusted, "10.1.2.3"},
		{"trusted proxy names the client", "10.1.2.3", []string{"203.0.113.9"}, "", trusted, "203.0.113.9"},
		{"client-written entries left of the real one are skipped", "10.1.2.3", []string{"6.6.6.6, 203.0.113.9"}, "", trusted, "203.0.113.9"},
		{"chain of trusted proxies is walked past", "10.1.2.3", []string{"203.0.113.9, 192.0.2.7, 10.9.9.9"}, "", trusted, "203.0.113.9"},
		{"several header lines read as one list", "10.1.2.3", []string{"6.6.6.6", "203.0.113.9, 10.9.9.9"}, "", trusted, "203.0.113.9"},
		{"all hops trusted: the left-most", "10.1.2.3", []string{"10.0.0.5, 10.0.0.6"}, "", trusted, "10.0.0.5"},
		{"CF-Connecting-IP wins from a trusted peer", "10.1.2.3", []string{"203.0.113.9"}, "203.0.113.50", trusted, "203.0.113.50"},
		{"bad CF-Connecting-IP falls back to XFF", "10.1.2.3", []string{"203.0.113.9"}, "nonsense", trusted, "203.0.113.9"},
		{"garbage ends the walk at the last good hop", "10.1.2.3", []string{"203.0.113.9, bogus, 10.0.0.6"}, "", trusted, "10.0.0.6"},
		{"garbage right away: the proxy", "10.1.2.3", []string{"bogus"}, "", trusted, "10.1.2.3"},
		{"entries with ports", "10.1.2.3", []string{"[2001:db8::1]:443, 10.0.0.6:80"}, "", trusted, "2001:db8::1"},
		{"empty entries skipped", "10.1.2.3", []string{" , 203.0.113.9 ,, "}, "", trusted, "203.0.113.9"},
		{"v4-mapped peer matches a v4 prefix", "::ffff:10.1.2.3", []string{"203.0.113.9"}, "", trusted, "203.0.113.9"},
		{"v4-mapped client is unmapped", "10.1.2.3", []string{"::ffff:203.0.113.9"}, "", trusted, "203.0.113.9"},
		{"zone dropped", "fe80::1%eth0", nil, "", nil, "fe80::1"},
	} {
		h := http.Header{}
		for _, l := range tc.xff {
			h.Add("X-Forwarded-For", l)
		}
		if tc.cf != "" {
			h.Set("CF-Connecting-IP", tc.cf)
		}
		got := viewerAddr(netip.MustParseAddr(tc.peer), h, tc.trusted)
		if got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want: prefixes joined by space, or "error"
	}{
		{"", ""},                        // nothing trusted
		{"10.0.0.0/8", "10.0.0.0/8"},    // one prefix
		{" 10.1.2.3/8 ,", "10.0.0.0/8"}, // host bits masked, spaces and empty entries skipped
		{"192.0.2.7,2001:db8::/32", "192.0.2.7/32 2001:db8::/32"}, // bare address becomes a host prefix
		{"::ffff:10.0.0.0/104", "10.0.0.0/8"},                     // mapped prefix unmapped
		{"::ffff:0:0/80", "error"},                                // mapped prefix that reaches into IPv6
		{"10.0.0.0/33", "error"},                                  // bad length
		{"example.com", "error"},                                  // a name is not an address
	} {
		ps, err := ParsePrefixes(tc.in)
		if tc.want == "error" {
			if err == nil {
				t.Errorf("ParsePrefixes(%q) = %v, want an error", tc.in, ps)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePrefixes(%q): %v", tc.in, err)
			continue
		}
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		if got := strings.Join(s, " "); got != tc.want {
			t.Errorf("ParsePrefixes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIDParam(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  string // "" with found=false: no id; "error": rejected
	}{
		{"", ""},                      // no query
		{"x=1", ""},                   // other parameters only
		{"id=tab-42", "tab-42"},       // plain
		{"a=1&id=A.b_c~9", "A.b_c~9"}, // after another parameter, every allowed character
		{"id=a&id=b", "a"},            // the first wins
		{"idx=1&id=z", "z"},           // a longer key is not id
		{"id=", "error"},              // empty
		{"id", "error"},               // no value
		{"id=a%20b", "error"},         // escapes are not allowed (nothing needs them)
		{"id=" + strings.Repeat("x", MaxIDLength), strings.Repeat("x", MaxIDLength)}, // longest allowed
		{"id=" + strings.Repeat("x", MaxIDLength+1), "error"},                        // too long
	} {
		v, found, err := idParam(tc.query)
		switch {
		case tc.want == "error":
			if err == nil {
				t.Errorf("idParam(%q) = %q, want an error", tc.query, v)
			}
		case tc.want == "":
			if found || err != nil {
				t.Errorf("idParam(%q) = %q, %v, %v; want none", tc.query, v, found, err)
			}
		default:
			if !found || err != nil || v != tc.want {
				t.Errorf("idParam(%q) = %q, %v, %v; want %q", tc.query, v, found, err, tc.want)
			}
		}
	}
	if ParamID("a") == ParamID("b") || ParamID("a") != ParamID("a") {
		t.Error("ParamID does not tell ids apart")
	}
}

// FuzzViewerAddr: whatever the headers say, the viewer is the peer (untrusted peer) or
// an address that appears in the request (trusted peer), and parsing never panics.
func FuzzViewerAddr(f *testing.F) {
	f.Add("10.0.0.1", "203.0.113.9, 10.0.0.2", "", true)
	f.Add("10.0.0.1", "", "203.0.113.9", true)
	f.Add("198.51.100.1", "203.0.113.9", "203.0.113.8", true)
	f.Add("10.0.0.1", "[2001:db8::1]:80,,  ,bogus, 10.0.0.3", "::ffff:1.2.3.4", true)
	f.Add("::ffff:10.0.0.1", "1.2.3.4:5", "x", false)
	f.Add("fe80::1%eth0", "fe80::2%lo, 10.0.0.1", "", true)
	trusted := trust{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	f.Fuzz(func(t *testing.T, peerS, xff, cf string, withTrust bool) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		h := http.Header{}
		if xff != "" {
			h["X-Forwarded-For"] = strings.Split(xff, "\n")
		}
		if cf != "" {
			h["Cf-Connecting-Ip"] = []string{cf}
		}
		tr := trusted
		if !withTrust {
			tr = nil
		}
		got := viewerAddr(peer, h, tr)
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("viewerAddr gave %v", got)
		}
		if !tr.contains(peer) {
			if got != normalize(peer) {
				t.Fatalf("untrusted peer %v: headers chose %v", peer, got)
			}
			return
		}
		if got == normalize(peer) {
			return
		}
		// Anything else must be an address written in one of the headers.
		found := false
		for _, field := range append(strings.FieldsFunc(xff, func(r rune) bool { return r == ',' || r == '\n' }), cf) {
			if a, ok := parseHopAddr(field); ok && a == got {
				found = true
			}
		}
		if !found {
			t.Fatalf("viewer %v appears in no header (xff %q, cf %q)", got, xff, cf)
		}
	})
}

// FuzzIDParam: an accepted id is always a valid one and was in the query.
func FuzzIDParam(f *testing.F) {
	for _, s := range []string{"", "id=abc", "a=b&id=x-1", "id=", "id=%41", "&&id=a&", "id=a=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		v, found, err := idParam(q)
		if err != nil || !found {
			return
		}
		if !validID(v) || !strings.Contains(q, "id="+v) {
			t.Fatalf("idParam(%q) accepted %q", q, v)
		}
	})
}

// FuzzParsePrefixes: a parsed list is valid, masked, unmapped prefixes.
func FuzzParsePrefixes(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "1.2.3.4, ::1", "::ffff:1.2.3.0/120", ",,", "1.2.3.4/40", "x/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePrefixes(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParsePrefixes(%q) gave %v", s, p)
			}
		}
	})
}
