package mirror

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stalling is an upstream that sends the first half of a segment, then waits for release
// before sending the rest (or, with abort, cutting the connection instead).
type stalling struct {
	body    []byte
	release chan struct{}
	abort   atomic.Bool // cut the connection after release instead of finishing
	chunked bool        // no Content-Length
}

func (s *stalling) serve(w http.ResponseWriter, r *http.Request) {
	if !s.chunked {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	}
	half := len(s.body) / 2
	w.Write(s.body[:half])
	w.(http.Flusher).Flush()
	<-s.release
	if s.abort.Load() {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	w.Write(s.body[half:])
}

// firstHalf GETs url and reports on got once the first half of want has arrived, then
// returns the rest of the read's outcome on done.
func firstHalf(ctx context.Context, url string, want []byte, got chan<- error, done chan<- error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		got <- err
		return
	}
	defer resp.Body.Close()
	half := make([]byte, len(want)/2)
	if _, err := io.ReadFull(resp.Body, half); err != nil {
		got <- err
		return
	}
	if !bytes.Equal(half, want[:len(want)/2]) {
		got <- io.ErrShortBuffer
		return
	}
	got <- nil
	rest, err := io.ReadAll(resp.Body)
	if err == nil && !bytes.Equal(append(half, rest...), want) {
		err = io.ErrShortBuffer
	}
	done <- err
}

func TestCoalescingStreamsToEveryWaiter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		chunked bool
	}{
		{"content-length", false}, // buffer sized up front
		{"chunked", true},         // buffer grows as bytes come
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const waiters = 30
			st := &stalling{body: segment(256 << 10), release: make(chan struct{}), chunked: tc.chunked}
			up := newUpstream(t, st.serve)
			s, base := startMirror(t, Config{Upstream: up.URL})
			got, done := make(chan error, waiters), make(chan error, waiters)
			for range waiters {
				go firstHalf(context.Background(), base+"/live/1.ts", st.body, got, done)
			}
			// Every waiter has its first half while the upstream is still stalled: bytes
			// are streamed as they arrive, not after the whole segment.
			for range waiters {
				select {
				case err := <-got:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("a waiter got no first byte while the upstream was mid-body")
				}
			}
			close(st.release)
			for range waiters {
				if err := <-done; err != nil {
					t.Fatalf("waiter: %v", err)
				}
			}
			if n := up.requests("/live/1.ts"); n != 1 {
				t.Fatalf("%d concurrent misses made %d upstream requests, want 1", waiters, n)
			}
			if m, c := s.countOf(kindSegment, resultMiss), s.countOf(kindSegment, resultCoalesced); m != 1 || c != waiters-1 {
				t.Fatalf("miss=%d coalesced=%d, want 1 and %d", m, c, waiters-1)
			}
			if r := get(t, base+"/live/1.ts"); r.cache != "HIT" || r.body != string(st.body) {
				t.Fatalf("after the fetch: %s", r.cache)
			}
		})
	}
}

func TestFetchOutlivesFirstRequester(t *testing.T) {
	t.Parallel()
	st := &stalling{body: segment(64 << 10), release: make(chan struct{})}
	up := newUpstream(t, st.serve)
	_, base := startMirror(t, Config{Upstream: up.URL})
	ctx, cancel := context.WithCancel(context.Background())
	got, done := make(chan error, 2), make(chan error, 2)
	go firstHalf(ctx, base+"/live/2.ts", st.body, got, done)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	cancel() // the first requester gives up mid-body
	if err := <-done; err == nil {
		t.Fatal("the cancelled request completed")
	}
	go firstHalf(context.Background(), base+"/live/2.ts", st.body, got, done)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-done; err != nil {
		t.Fatalf("the second requester: %v", err)
	}
	if r := get(t, base+"/live/2.ts"); r.cache != "HIT" {
		t.Fatalf("the fetch did not complete into the cache: %s", r.cache)
	}
	if n := up.requests("/live/2.ts"); n != 1 {
		t.Fatalf("upstream requests %d, want 1", n)
	}
}

func TestFetchErrorReachesEveryWaiter(t *testing.T) {
	t.Parallel()
	const waiters = 10
	st := &stalling{body: segment(64 << 10), release: make(chan struct{})}
	st.abort.Store(true)
	up := newUpstream(t, st.serve)
	s, base := startMirror(t, Config{Upstream: up.URL})
	got, done := make(chan error, waiters), make(chan error, waiters)
	for range waiters {
		go firstHalf(context.Background(), base+"/live/3.ts", st.body, got, done)
	}
	for range waiters {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	close(st.release) // the upstream drops the connection mid-body
	for range waiters {
		if err := <-done; !isTruncation(err) {
			t.Fatalf("a waiter saw %v, want a truncated body", err)
		}
	}
	if v := value(s.m.upstreamErrors.WithLabelValues("segment", classTruncated)); v != 1 {
		t.Fatalf("truncated errors %v, want 1", v)
	}
	// Nothing broken was cached: the next request goes upstream again.
	st.abort.Store(false)
	if r := get(t, base+"/live/3.ts"); r.cache != "MISS" || r.body != string(st.body) {
		t.Fatalf("after the failure: %s, %d bytes", r.cache, len(r.body))
	}
}

// panicBody panics on the read after its first.
type panicBody struct {
	first   []byte
	release chan struct{}
	reads   int
}

func (b *panicBody) Read(p []byte) (int, error) {
	b.reads++
	if b.reads == 1 {
		return copy(p, b.first), nil
	}
	<-b.release
	panic("injected fault in the body reader")
}

func (b *panicBody) Close() error { return nil }

func TestFetchPanicReachesEveryWaiter(t *testing.T) {
	t.Parallel()
	const waiters = 10
	want := segment(8 << 10)
	release := make(chan struct{})
	var mu sync.Mutex // protects calls
	calls := 0
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if r.URL.Path == "/before.ts" {
			panic("injected fault before the response")
		}
		if n > 1 && r.URL.Path == "/during.ts" {
			return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: int64(len(want)),
				Body: io.NopCloser(bytes.NewReader(want))}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: int64(len(want)),
			Body: &panicBody{first: want[:len(want)/2], release: release}}, nil
	})
	s, base := startMirror(t, Config{Upstream: "http://upstream.invalid", Transport: tr})

	got, done := make(chan error, waiters), make(chan error, waiters)
	for range waiters {
		go firstHalf(context.Background(), base+"/during.ts", want, got, done)
	}
	for range waiters {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	for range waiters {
		if err := <-done; !isTruncation(err) {
			t.Fatalf("a waiter saw %v, want the panic as a truncated body", err)
		}
	}
	if r := get(t, base+"/before.ts"); r.status != http.StatusBadGateway {
		t.Fatalf("panic before the response: %d, want 502", r.status)
	}
	if v := value(s.m.upstreamErrors.WithLabelValues("segment", classPanic)); v != 2 {
		t.Fatalf("panics counted %v, want 2", v)
	}
	// The server keeps serving.
	if r := get(t, base+"/during.ts"); r.status != 200 || r.body != string(want) {
		t.Fatalf("after the panics: %d", r.status)
	}
}
