package counter

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Header names (canonical form) that a trusted proxy may use to name the viewer.
const (
	headerCFConnectingIP = "Cf-Connecting-Ip" // Cloudflare: exactly one address
	headerXForwardedFor  = "X-Forwarded-For"  // a comma-separated chain, client first
)

// trust holds the proxies whose forwarding headers are believed.
type trust []netip.Prefix

func (t trust) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// viewerAddr is the address that identifies the viewer of a request arriving from peer.
//
// From an untrusted peer the headers are ignored: anyone can write X-Forwarded-For, and
// believing it would let one client count as thousands (or hide as someone else). From a
// trusted proxy, CF-Connecting-IP wins when it parses; otherwise X-Forwarded-For is
// walked from the right (the hop nearest to us, which our proxy appended) past every
// trusted proxy, and the first untrusted address is the viewer. An entry that does not
// parse ends the walk: the viewer is then the last address that did parse (a trusted
// proxy), never the garbage. Proxies that are trusted must overwrite these headers, not
// pass on what the client sent.
func viewerAddr(peer netip.Addr, h http.Header, trusted trust) netip.Addr {
	peer = normalize(peer)
	if len(trusted) == 0 || !trusted.contains(peer) {
		return peer
	}
	if v := h[headerCFConnectingIP]; len(v) > 0 {
		if a, ok := parseHopAddr(v[0]); ok {
			return a
		}
	}
	addr := peer
	lines := h[headerXForwardedFor]
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				entry, rest = rest[j+1:], rest[:j]
			} else {
				entry, rest = rest, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseHopAddr(entry)
			if !ok {
				return addr
			}
			addr = a
			if !trusted.contains(a) {
				return a
			}
		}
	}
	return addr
}

// parseHopAddr parses one forwarding-header entry: an address, or an address with a
// port ("1.2.3.4:5678", "[2001:db8::1]:443"), as some proxies write.
func parseHopAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr()), true
	}
	return netip.Addr{}, false
}

// normalize makes one viewer one address: IPv4-mapped IPv6 becomes IPv4, zones go.
func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// ParsePrefixes parses a comma-separated list of CIDR prefixes or bare addresses (a
// bare address is a /32 or /128), as given to --trusted-proxies. Empty entries are
// skipped; host bits are masked off.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: not a CIDR prefix", f)
			}
			bits := p.Bits()
			if p.Addr().Is4In6() {
				// Addresses are compared unmapped, so ::ffff:10.0.0.0/104 means 10.0.0.0/8.
				if bits < 96 {
					return nil, fmt.Errorf("trusted proxy %q: an IPv4-mapped prefix must be /96 or longer", f)
				}
				bits -= 96
			}
			out = append(out, netip.PrefixFrom(normalize(p.Addr()), bits).Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", f)
		}
		a = normalize(a)
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
