// Package promtext reads a server's /metrics (the Prometheus text format) and adds up
// its series: what testenv/local's and testenv/containers' samplers scrape every
// second from the servers of a run.
package promtext

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxSize bounds one /metrics answer: what follows is not read.
const MaxSize = 8 << 20

// Families are a scrape's metric families, by name.
type Families = map[string]*dto.MetricFamily

// NewClient returns a client that keeps one connection per server alive, so a scrape
// still gets through when the server is out of file descriptors or at its connection
// limit; dialTimeout bounds a new connection.
func NewClient(dialTimeout time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: dialTimeout}).DialContext,
	}}
}

// Scrape GETs url with c and parses the answer (at most MaxSize bytes).
func Scrape(ctx context.Context, c *http.Client, url string) (Families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	fams, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return fams, nil
}

// Parse reads the text format from r, at most MaxSize bytes of it.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(io.LimitReader(r, MaxSize))
}

// Sum adds up the values of a family's counter, gauge and untyped series that keep
// accepts (all when keep is nil); a missing family (nil) sums to 0.
func Sum(f *dto.MetricFamily, keep func(labels map[string]string) bool) float64 {
	if f == nil {
		return 0
	}
	var total float64
	for _, m := range f.GetMetric() {
		if keep != nil {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if !keep(labels) {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

// LabelIn accepts the series whose label name has one of values.
func LabelIn(name string, values ...string) func(labels map[string]string) bool {
	return func(l map[string]string) bool {
		for _, v := range values {
			if l[name] == v {
				return true
			}
		}
		return false
	}
}
