package mirror

import (
	"strconv"
	"strings"
	"time"
)

// maxCacheControlAge caps an upstream's max-age so a typo cannot pin an object for years.
const maxCacheControlAge = 365 * 24 * time.Hour

// parseCacheControl reads the freshness an upstream asked for (RFC 9111 §5.2.2): noStore
// for no-store, no-cache or private (a shared cache must not reuse such a response),
// else s-maxage over max-age. ok is false when none of those directives is present (or
// their values are unreadable), and the per-kind TTL then applies.
func parseCacheControl(values []string) (ttl time.Duration, noStore, ok bool) {
	maxAge, sMaxAge := -1, -1
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch name {
			case "no-store", "no-cache", "private":
				return 0, true, true
			case "max-age":
				if n, good := seconds(arg); good {
					maxAge = n
				}
			case "s-maxage":
				if n, good := seconds(arg); good {
					sMaxAge = n
				}
			}
		}
	}
	switch {
	case sMaxAge >= 0:
		return ageDuration(sMaxAge), false, true
	case maxAge >= 0:
		return ageDuration(maxAge), false, true
	}
	return 0, false, false
}

// seconds parses a delta-seconds value (digits only).
func seconds(s string) (int, bool) {
	if s == "" || len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func ageDuration(n int) time.Duration {
	d := time.Duration(n) * time.Second
	if d > maxCacheControlAge || d < 0 {
		return maxCacheControlAge
	}
	return d
}
