// Package nginx runs Debian's real nginx as an HLS caching mirror (proxy_pass +
// proxy_cache, as the relay's mirrors were) in front of an upstream, from a Tuning, on a
// free loopback port with its own prefix directory. It exposes what a report needs:
// error-log lines counted by class and stub_status connections. It is not tied to
// testing.T: the bench starts it as one more mirror kind.
package nginx

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"
)

// DefaultBinary is Debian's nginx (package nginx, 1.22 on bookworm).
const DefaultBinary = "/usr/sbin/nginx"

// Defaults for Tuning; a zero field takes its default. Where nginx has its own default,
// the value here is nginx's, so a zero Tuning is a stock nginx mirror with the relay's
// cache rules.
const (
	DefaultWorkerProcesses   = 1
	DefaultWorkerConnections = 512 // nginx's default: the limit the relay ran into
	DefaultPlaylistValid     = time.Second
	DefaultSegmentValid      = 60 * time.Second
	DefaultCacheLockTimeout  = 5 * time.Second // nginx's default
	DefaultCacheLockAge      = 5 * time.Second // nginx's default
	DefaultBacklog           = 511             // nginx's default on Linux
	DefaultCacheMaxSize      = 256 << 20
	DefaultProxyTimeout      = 60 * time.Second // nginx's proxy_connect/read_timeout
	DefaultKeepaliveTimeout  = 75 * time.Second // nginx's keepalive_timeout
	DefaultKeepaliveRequests = 1000             // nginx's keepalive_requests (1.19.10+)
	DefaultStubStatusPath    = "/nginx_status"
)

// Tuning is one nginx mirror configuration. Zero fields take the defaults above.
type Tuning struct {
	// Name labels the tuning in the rendered config and in reports.
	Name string
	// WorkerProcesses is worker_processes.
	WorkerProcesses int
	// WorkerConnections is worker_connections: the most connections (client and
	// upstream together) one worker holds.
	WorkerConnections int
	// WorkerRlimitNofile is worker_rlimit_nofile, the workers' open-files limit (0: the
	// limit nginx was started with).
	WorkerRlimitNofile int
	// PlaylistValid, SegmentValid and NegativeValid are proxy_cache_valid for 200s of
	// .m3u8, 200s of segments, and 404s (NegativeValid 0: 404s are not cached). nginx
	// counts them in whole seconds.
	PlaylistValid, SegmentValid, NegativeValid time.Duration
	// CacheLock is proxy_cache_lock: one request populates a cache entry while the
	// others wait (up to CacheLockTimeout, after which they go upstream uncached).
	CacheLock bool
	// CacheLockTimeout and CacheLockAge are proxy_cache_lock_timeout and _age.
	CacheLockTimeout, CacheLockAge time.Duration
	// UseStale is proxy_cache_use_stale (e.g. "error", "timeout", "updating",
	// "http_500"); empty is off.
	UseStale []string
	// UpstreamKeepalive is the upstream block's keepalive (idle connections kept per
	// worker); 0 opens a connection per upstream request, nginx's default.
	UpstreamKeepalive int
	// AccessLog writes access.log in the prefix; off by default (it costs throughput).
	AccessLog bool
	// HonorCacheControl lets the upstream's Cache-Control/Expires override
	// proxy_cache_valid (nginx's default behaviour); false ignores them so the per-kind
	// validity rules alone apply, as in the relay.
	HonorCacheControl bool
	// Backlog is the listen socket's backlog.
	Backlog int
	// CacheMaxSize is proxy_cache_path max_size in bytes.
	CacheMaxSize int64
	// ProxyConnectTimeout and ProxyReadTimeout are proxy_connect_timeout and
	// proxy_read_timeout ("upstream timed out" in the error log).
	ProxyConnectTimeout, ProxyReadTimeout time.Duration
	// KeepaliveTimeout and KeepaliveRequests are the client keep-alive limits.
	KeepaliveTimeout  time.Duration
	KeepaliveRequests int

	// WorkerCPUAffinity is worker_cpu_affinity ("01", "auto", ...); empty leaves the
	// workers unpinned. Benchmarks pin so the server under test gets exactly one core.
	WorkerCPUAffinity string

	// Listen is the address to listen on; empty picks a free loopback port.
	Listen string
	// Binary is the nginx executable; empty is DefaultBinary.
	Binary string
}

// withDefaults fills zero fields.
func (t Tuning) withDefaults() Tuning {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&t.WorkerProcesses, DefaultWorkerProcesses)
	def(&t.WorkerConnections, DefaultWorkerConnections)
	def(&t.Backlog, DefaultBacklog)
	def(&t.KeepaliveRequests, DefaultKeepaliveRequests)
	defDur(&t.PlaylistValid, DefaultPlaylistValid)
	defDur(&t.SegmentValid, DefaultSegmentValid)
	defDur(&t.CacheLockTimeout, DefaultCacheLockTimeout)
	defDur(&t.CacheLockAge, DefaultCacheLockAge)
	defDur(&t.ProxyConnectTimeout, DefaultProxyTimeout)
	defDur(&t.ProxyReadTimeout, DefaultProxyTimeout)
	defDur(&t.KeepaliveTimeout, DefaultKeepaliveTimeout)
	if t.CacheMaxSize == 0 {
		t.CacheMaxSize = DefaultCacheMaxSize
	}
	if t.Binary == "" {
		t.Binary = DefaultBinary
	}
	return t
}

// validStale are the proxy_cache_use_stale arguments nginx 1.22 accepts.
var validStale = map[string]bool{"error": true, "timeout": true, "invalid_header": true, "updating": true,
	"http_500": true, "http_502": true, "http_503": true, "http_504": true, "http_403": true, "http_404": true,
	"http_429": true, "off": true}

// validate checks a defaulted tuning; errors name the field.
func (t Tuning) validate() error {
	for name, v := range map[string]int{"WorkerProcesses": t.WorkerProcesses, "WorkerConnections": t.WorkerConnections,
		"Backlog": t.Backlog, "KeepaliveRequests": t.KeepaliveRequests} {
		if v < 1 {
			return fmt.Errorf("nginx tuning %q: %s %d: must be at least 1", t.Name, name, v)
		}
	}
	for name, v := range map[string]int{"WorkerRlimitNofile": t.WorkerRlimitNofile, "UpstreamKeepalive": t.UpstreamKeepalive} {
		if v < 0 {
			return fmt.Errorf("nginx tuning %q: %s %d: must not be negative", t.Name, name, v)
		}
	}
	// proxy_cache_valid takes whole seconds only.
	for name, d := range map[string]time.Duration{"PlaylistValid": t.PlaylistValid, "SegmentValid": t.SegmentValid,
		"NegativeValid": t.NegativeValid} {
		if d < 0 || d%time.Second != 0 {
			return fmt.Errorf("nginx tuning %q: %s %v: proxy_cache_valid wants a non-negative whole number of seconds", t.Name, name, d)
		}
	}
	for name, d := range map[string]time.Duration{"CacheLockTimeout": t.CacheLockTimeout, "CacheLockAge": t.CacheLockAge,
		"ProxyConnectTimeout": t.ProxyConnectTimeout, "ProxyReadTimeout": t.ProxyReadTimeout, "KeepaliveTimeout": t.KeepaliveTimeout} {
		if d < 0 || d%time.Millisecond != 0 {
			return fmt.Errorf("nginx tuning %q: %s %v: want a non-negative whole number of milliseconds", t.Name, name, d)
		}
	}
	for _, s := range t.UseStale {
		if !validStale[s] {
			return fmt.Errorf("nginx tuning %q: UseStale %q: not a proxy_cache_use_stale argument", t.Name, s)
		}
	}
	if t.CacheMaxSize < 1<<20 {
		return fmt.Errorf("nginx tuning %q: CacheMaxSize %d: want at least 1 MiB", t.Name, t.CacheMaxSize)
	}
	for _, c := range t.WorkerCPUAffinity {
		if !strings.ContainsRune("01 auto", c) {
			return fmt.Errorf("nginx tuning %q: WorkerCPUAffinity %q: want bit masks or auto", t.Name, t.WorkerCPUAffinity)
		}
	}
	if strings.ContainsAny(t.Name, "\n\r") {
		return fmt.Errorf("nginx tuning %q: Name: no line breaks", t.Name)
	}
	return nil
}

// confData is what the template sees.
type confData struct {
	Tuning
	Prefix, Listen, UpstreamHostPort, UpstreamHost, UpstreamScheme, User string
}

// nginxDuration writes d in nginx's time syntax.
func nginxDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

var confTemplate = template.Must(template.New("nginx.conf").Funcs(template.FuncMap{
	"dur":  nginxDuration,
	"join": strings.Join,
}).Parse(`# Rendered by stampede testenv/nginx for tuning "{{.Name}}". Do not edit: re-render.
{{if .User}}user {{.User}};
{{end}}worker_processes {{.WorkerProcesses}};
{{if .WorkerRlimitNofile}}worker_rlimit_nofile {{.WorkerRlimitNofile}};
{{end}}{{if .WorkerCPUAffinity}}worker_cpu_affinity {{.WorkerCPUAffinity}};
{{end}}daemon off;
master_process on;
pid {{.Prefix}}/nginx.pid;
error_log {{.Prefix}}/error.log warn;

events {
    worker_connections {{.WorkerConnections}};
}

http {
    {{if .AccessLog}}access_log {{.Prefix}}/access.log;{{else}}access_log off;{{end}}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout {{dur .KeepaliveTimeout}};
    keepalive_requests {{.KeepaliveRequests}};
    client_body_temp_path {{.Prefix}}/tmp/body;
    proxy_temp_path {{.Prefix}}/tmp/proxy;
    fastcgi_temp_path {{.Prefix}}/tmp/fastcgi;
    uwsgi_temp_path {{.Prefix}}/tmp/uwsgi;
    scgi_temp_path {{.Prefix}}/tmp/scgi;
    proxy_cache_path {{.Prefix}}/cache levels=1:2 keys_zone=stampede:16m max_size={{.CacheMaxSize}} inactive=10m use_temp_path=off;

    upstream origin {
        server {{.UpstreamHostPort}};
{{- if .UpstreamKeepalive}}
        keepalive {{.UpstreamKeepalive}};
{{- end}}
    }

    server {
        listen {{.Listen}} backlog={{.Backlog}};

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {{.UpstreamHost}};
        proxy_connect_timeout {{dur .ProxyConnectTimeout}};
        proxy_read_timeout {{dur .ProxyReadTimeout}};
        proxy_cache stampede;
        proxy_cache_key $request_uri;
        proxy_cache_lock {{if .CacheLock}}on{{else}}off{{end}};
        proxy_cache_lock_timeout {{dur .CacheLockTimeout}};
        proxy_cache_lock_age {{dur .CacheLockAge}};
        proxy_cache_use_stale {{if .UseStale}}{{join .UseStale " "}}{{else}}off{{end}};
{{- if not .HonorCacheControl}}
        proxy_ignore_headers Cache-Control Expires X-Accel-Expires Set-Cookie;
{{- end}}
{{- if .NegativeValid}}
        proxy_cache_valid 404 {{dur .NegativeValid}};
{{- end}}
        add_header X-Cache $upstream_cache_status always;

        location = ` + DefaultStubStatusPath + ` {
            stub_status;
        }
        location ~* \.m3u8$ {
            proxy_pass {{.UpstreamScheme}}://origin;
            proxy_cache_valid 200 {{dur .PlaylistValid}};
        }
        location ~* \.(ts|m4s|mp4|m4a|m4v|aac|ac3|ec3|mp3|vtt|webvtt|key)$ {
            proxy_pass {{.UpstreamScheme}}://origin;
            proxy_cache_valid 200 {{dur .SegmentValid}};
        }
        location / {
            proxy_pass {{.UpstreamScheme}}://origin;
            proxy_cache off;
        }
    }
}
`))

// Render writes the nginx.conf for tuning t, serving on listen, mirroring upstream, with
// every path inside prefix. Zero fields of t take their defaults.
func Render(t Tuning, upstream, listen, prefix string) (string, error) {
	t = t.withDefaults()
	if err := t.validate(); err != nil {
		return "", err
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("nginx: upstream %q: want http(s)://host:port", upstream)
	}
	hostPort := u.Host
	if u.Port() == "" {
		hostPort += map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	}
	if strings.ContainsAny(prefix+listen, " ;{}\"'\n") {
		return "", fmt.Errorf("nginx: prefix %q or listen %q contains characters nginx.conf cannot hold", prefix, listen)
	}
	d := confData{Tuning: t, Prefix: prefix, Listen: listen, UpstreamHostPort: hostPort, UpstreamHost: u.Host, UpstreamScheme: u.Scheme}
	if os.Geteuid() == 0 {
		// As root the master would switch workers to "nobody", who cannot write the
		// private prefix; the workers stay root instead (this is a test bench).
		d.User = "root"
	}
	var b bytes.Buffer
	if err := confTemplate.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}
