package origin

import (
	"fmt"
	"strconv"
	"strings"
)

// ladderFactors multiply the lowest bit rate to give each rendition's: 500k becomes
// 500k, 1500k, 3000k, 6000k, 12000k, 24000k — roughly the steps of a 144p…1080p ladder.
var ladderFactors = [MaxRenditions]int64{1, 3, 6, 12, 24, 48}

// Ladder returns the bit rates of n renditions whose lowest is bitrate.
func Ladder(bitrate int64, n int) []int64 {
	n = max(0, min(n, MaxRenditions))
	out := make([]int64, n)
	for i := range out {
		out[i] = bitrate * ladderFactors[i]
	}
	return out
}

// FormatBitrate names a bit rate the way rendition paths do: "500k" when it is whole
// kilobits, else plain bits ("123456").
func FormatBitrate(bps int64) string {
	if bps != 0 && bps%1000 == 0 {
		return strconv.FormatInt(bps/1000, 10) + "k"
	}
	return strconv.FormatInt(bps, 10)
}

// ParseBitrate reads a bit rate in bits/s: "500000", "500k", "1.5M", "2m", "1G"
// (k, M, G are powers of 1000; case does not matter). It must be positive and whole.
func ParseBitrate(s string) (int64, error) {
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("bit rate %q: %s", s, why)
	}
	num := strings.TrimSpace(s)
	exp := 0 // power of ten the suffix adds
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'k', 'K':
			exp, num = 3, num[:n-1]
		case 'm', 'M':
			exp, num = 6, num[:n-1]
		case 'g', 'G':
			exp, num = 9, num[:n-1]
		}
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return bad("want a number of bits/s like 500000, 500k or 1.5M")
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > exp {
		return bad("not a whole number of bits/s")
	}
	digits := strings.TrimLeft(whole+frac+strings.Repeat("0", exp-len(frac)), "0")
	if len(digits) > 11 { // beyond maxBitrate, and far from int64 overflow
		return bad("must be between 1 and " + FormatBitrate(maxBitrate))
	}
	v, _ := strconv.ParseInt("0"+digits, 10, 64)
	if v <= 0 || v > maxBitrate {
		return bad("must be between 1 and " + FormatBitrate(maxBitrate))
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
