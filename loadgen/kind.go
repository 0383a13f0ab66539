package loadgen

// Kind is what a request was for; it labels metrics, histograms and results.
type Kind int

// Request kinds.
const (
	// KindPlaylist is a multivariant or media playlist load.
	KindPlaylist Kind = iota
	// KindSegment is a media segment (or an EXT-X-MAP init segment).
	KindSegment
	// KindHeartbeat is a viewer-counter call.
	KindHeartbeat
	// KindPing is the round-trip probe sent to each mirror at join to pick the nearest.
	KindPing
	numKinds
)

var kindNames = [numKinds]string{"playlist", "segment", "heartbeat", "ping"}

// String returns the kind's metric label value.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return "unknown"
	}
	return kindNames[k]
}
