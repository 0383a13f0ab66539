package loadgen

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/stampede-live/stampede/loadgen/report"
)

// Errors a viewer's request can end in besides what the network returns.
var (
	// errTimeout: the hls.js time-to-first-byte or total-load timeout passed.
	errTimeout = errors.New("timeout")
	// errMalformedResponse: the server's answer was not HTTP/1.x we could read.
	errMalformedResponse = errors.New("malformed HTTP response")
	// errBodyTooLarge: a playlist or heartbeat answer larger than MaxPlaylistBytes.
	errBodyTooLarge = errors.New("body larger than the playlist limit")
	// errStopped: the viewer was stopped while the request was in flight.
	errStopped = errors.New("viewer stopped")
)

// errorClasses lists report's classes in the order metrics and series use them.
var errorClasses = [...]string{
	report.ClassTimeout, report.ClassRefused, report.ClassReset, report.ClassEMFILE,
	report.ClassHTTP4xx, report.ClassHTTP5xx, report.ClassMalformed, report.ClassOther,
}

// classIndex is the position of each class in errorClasses.
type classIndex int

const (
	clsTimeout classIndex = iota
	clsRefused
	clsReset
	clsEMFILE
	cls4xx
	cls5xx
	clsMalformed
	clsOther
	numClasses
)

// classifyStatus maps an HTTP status to an error class; ok is false for success (2xx).
func classifyStatus(code int) (classIndex, bool) {
	switch {
	case code >= 200 && code < 300:
		return 0, false
	case code >= 400 && code < 500:
		return cls4xx, true
	case code >= 500 && code < 600:
		return cls5xx, true
	}
	// 1xx after the interim ones, 3xx (the simulated player follows no redirects) or
	// nonsense: the viewer could not use the answer.
	return clsOther, true
}

// classifyError maps a transport error to an error class.
func classifyError(err error) classIndex {
	var ne net.Error
	switch {
	case errors.Is(err, errTimeout), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return clsTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return clsRefused
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return clsEMFILE
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return clsReset
	case errors.Is(err, errMalformedResponse), errors.Is(err, errBodyTooLarge), errors.Is(err, errPlaylist):
		return clsMalformed
	}
	return clsOther
}

// errPlaylist wraps every playlist parse failure so that it classifies as malformed.
var errPlaylist = errors.New("playlist")
