package counter

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"net/netip"
	"strings"
)

// ID names one viewer inside a Store: 16 bytes and no pointers, so a map keyed by IDs
// holds no string headers and costs the garbage collector nothing to scan. An address
// becomes its 16-byte form (IPv4 and IPv4-mapped IPv6 are the same viewer); an explicit
// ?id= value becomes a 128-bit hash of itself.
type ID [16]byte

// AddrID is the ID of a viewer known by its address. The zone is dropped.
func AddrID(a netip.Addr) ID { return ID(a.As16()) }

// Two seeds make 128 bits of hash; they are random per process, so nobody can compute
// offline two ?id= values that collide.
var idSeedHi, idSeedLo = maphash.MakeSeed(), maphash.MakeSeed()

// ParamID is the ID of a viewer that named itself with ?id=value.
func ParamID(value string) ID {
	var id ID
	binary.LittleEndian.PutUint64(id[:8], maphash.String(idSeedHi, value))
	binary.LittleEndian.PutUint64(id[8:], maphash.String(idSeedLo, value))
	return id
}

// MaxIDLength bounds an explicit ?id= value.
const MaxIDLength = 64

var errBadID = errors.New("id: want 1 to 64 characters from A-Z a-z 0-9 . _ ~ -")

// idParam finds the first `id` parameter in a raw query string. It reports found=false
// when there is none, and an error when the value is empty, too long, or uses anything
// but the unreserved URL characters (so it never needs unescaping). It does not allocate.
func idParam(rawQuery string) (value string, found bool, err error) {
	q := rawQuery
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		key, val, _ := strings.Cut(pair, "=")
		if key != "id" {
			continue
		}
		if !validID(val) {
			return "", true, errBadID
		}
		return val, true, nil
	}
	return "", false, nil
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}
