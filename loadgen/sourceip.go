package loadgen

import (
	"fmt"
	"net"
	"net/netip"
)

// Source address modes (SwarmConfig.SourceIPs).
const (
	// SourceIPsAuto gives each viewer its own loopback address when every target is on
	// loopback (the default), and lets the kernel choose otherwise.
	SourceIPsAuto = "auto"
	// SourceIPsOn requires distinct addresses (an error when a target is not on loopback).
	SourceIPsOn = "on"
	// SourceIPsOff lets the kernel choose: every viewer appears as one address.
	SourceIPsOff = "off"
)

// DefaultSourceNet is where viewers' loopback addresses come from. Linux answers on all
// of 127.0.0.0/8 without configuration.
const DefaultSourceNet = "127.0.0.0/8"

// sourceAllocator hands out distinct host addresses from a prefix: the n-th viewer of a
// run gets the n-th address, skipping addresses ending in .0 or .255 and the prefix's
// first /16 (first /24 for a prefix narrower than /15): in the default 127.0.0.0/8 that
// keeps viewers off 127.0.x.x, where servers listen (testenv/local gives each its own
// 127.0.1.N), so no viewer shares an address with a server. It wraps around when the
// prefix is used up.
type sourceAllocator struct {
	prefix netip.Prefix
	first  uint32
	size   uint32
}

func newSourceAllocator(cidr string) (*sourceAllocator, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("SourceNet: %v", err)
	}
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() > 24 {
		return nil, fmt.Errorf("SourceNet: %q must be an IPv4 prefix of /24 or wider", cidr)
	}
	a := p.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	size := uint32(1) << (32 - p.Bits())
	first := base
	switch {
	case size > 1<<16:
		first += 1 << 16
		size -= 1 << 16
	case size > 256:
		first += 256
		size -= 256
	}
	return &sourceAllocator{prefix: p, first: first, size: size}, nil
}

// addr returns the n-th source address.
func (s *sourceAllocator) addr(n int) net.Addr {
	per := uint32(254) // usable per /24: .1 to .254
	slots := s.size / 256 * per
	if slots == 0 {
		slots = per
	}
	k := uint32(n) % slots
	ip := s.first + (k/per)*256 + 1 + k%per
	return &net.TCPAddr{IP: net.IPv4(byte(ip>>24), byte(ip>>16), byte(ip>>8), byte(ip))}
}
