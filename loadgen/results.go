package loadgen

import (
	"bufio"
	"io"
	"strconv"
	"sync"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// resultsWriter writes per-request results in vegeta's (gob) encoding, so that
// `vegeta report`, `vegeta plot` and `vegeta encode` read a stampede run like their own
// attack. It samples systematically: with rate 0.1 every tenth request is written, so the
// sample keeps the run's mix of kinds and time.
type resultsWriter struct {
	attack string

	mu   sync.Mutex // protects all below
	bw   *bufio.Writer
	enc  vegeta.Encoder
	rate float64
	acc  float64
	seq  uint64
	err  error // the first write error; later results are dropped
}

func newResultsWriter(w io.Writer, rate float64, attack string) *resultsWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &resultsWriter{attack: attack, bw: bw, enc: vegeta.NewEncoder(bw), rate: rate}
}

func (w *resultsWriter) write(req *request, res *response) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acc += w.rate
	if w.acc < 1 || w.err != nil {
		return
	}
	w.acc--
	scheme := "http://"
	if req.ep.https {
		scheme = "https://"
	}
	r := vegeta.Result{
		Attack:    w.attack + "/" + req.kind.String(),
		Seq:       w.seq,
		Code:      uint16(res.code),
		Timestamp: res.start,
		Latency:   res.total,
		BytesIn:   uint64(res.bytes),
		Method:    "GET",
		URL:       scheme + req.ep.host + req.path,
	}
	if res.err != nil {
		r.Error = res.err.Error()
	} else if _, bad := classifyStatus(res.code); bad {
		r.Error = "HTTP " + strconv.Itoa(res.code)
	}
	w.seq++
	w.err = w.enc.Encode(&r)
}

// flush writes out what is buffered.
func (w *resultsWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.bw.Flush(); w.err == nil {
		w.err = err
	}
	return w.err
}
