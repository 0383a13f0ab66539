// Package containers runs the relay's topology — the origin, mirror-1 … mirror-M and
// the viewer counter — as Docker containers, through testcontainers-go, so a run can
// give each server the CPUs, memory and open-files limit of the machine it will have
// on the day, and cut the network between a mirror and the origin.
//
// Every container runs one image, built at run time from a FROM scratch Dockerfile
// holding the static (CGO off) stampede binary: nothing is pulled. Each container has
// a read-only root filesystem (a small tmpfs on /tmp), the limits of its Role (NanoCPUs,
// memory, a nofile ulimit, GOMAXPROCS), its port published on 127.0.0.1 only, and a
// label naming this process's session. Two networks join them:
//
//	edge      the origin, every mirror and the counter; aliases mirror-N and counter.
//	          Published ports go through it.
//	upstream  internal (no route out): the origin, alias origin, and every mirror.
//	          Mirrors fetch http://origin:8080, a name only this network resolves,
//	          so disconnecting a mirror from it is a partition from the origin.
//
// The viewers run on the host and reach the mirrors through their published ports on
// 127.0.0.1, each from its own 127.x.y.z address. A container sees every client as
// the edge network's gateway (docker-proxy), so the counter is put behind a small
// proxy on the host that sets X-Forwarded-For to the viewer's address, and the counter
// trusts exactly that gateway (--trusted-proxies): it still counts distinct viewers,
// as it would behind Cloudflare or nginx in the real relay.
//
// Faults: Pause/Resume (cgroup freezer: a hung server that keeps its connections),
// Kill, Stop/Start, Restart, and Partition/Heal (disconnect from and reconnect to the
// upstream network). RunFaults applies a scenario's fault plan with the same meaning as
// testenv/local. Exits are recorded from Docker's events with the server's last words
// from its log, and a Role with local.RestartOnCrash is restarted after a backoff.
//
// Ryuk (testcontainers' reaper, an image that would have to be pulled) is disabled:
// Topology.Close and Image.Remove remove what they created, and SweepOrphans removes
// what a killed process left behind. Everything carries the LabelSession label, so
// `docker ps -a --filter label=org.stampede.session` finds it.
package containers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Labels put on every container, network and image this package creates.
const (
	// LabelSession names the process that created the object (Session()).
	LabelSession = "org.stampede.session"
	// LabelOwner is host/pid of that process, for SweepOrphans.
	LabelOwner = "org.stampede.owner"
	// LabelTopology names the topology a container or network belongs to.
	LabelTopology = "org.stampede.topology"
	// LabelRole is a container's role name: origin, mirror-N, counter.
	LabelRole = "org.stampede.role"
)

// Defaults.
const (
	// DefaultRepo is the image repository; the tag is random per build.
	DefaultRepo = "stampede-relay"
	// ServerPort is the port every server listens on inside its container.
	ServerPort = 8080
	// DefaultHealthTimeout bounds the wait for a container's /healthz.
	DefaultHealthTimeout = 30 * time.Second
	// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL (Docker counts
	// it in whole seconds).
	DefaultGrace = 5 * time.Second
	// DefaultTmpfsSize is the size of the tmpfs mounted on /tmp (the root is read-only).
	DefaultTmpfsSize = "16m"
	// pingTimeout bounds the question "does a Docker daemon answer?".
	pingTimeout = 5 * time.Second
)

// ErrNoDaemon is wrapped by every error that comes from no Docker daemon answering.
var ErrNoDaemon = errors.New("no Docker daemon answers")

var (
	sessionOnce sync.Once
	session     string
)

// Session is this process's session id: a random name put in the LabelSession label of
// everything it creates.
func Session() string {
	sessionOnce.Do(func() { session = randomHex(6) })
	return session
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// owner is LabelOwner's value for this process.
func owner() string {
	h, _ := os.Hostname()
	return h + "/" + strconv.Itoa(os.Getpid())
}

// baseLabels are the labels of every object this process creates.
func baseLabels() map[string]string {
	return map[string]string{LabelSession: Session(), LabelOwner: owner()}
}

// daemon is the connection to Docker shared by the process.
type daemon struct {
	provider *testcontainers.DockerProvider
	cli      client.APIClient
}

var (
	daemonOnce sync.Once
	daemonConn *daemon
	daemonErr  error
)

// configureTestcontainers sets what testcontainers-go reads once, at its first call:
// Ryuk off (we clean up ourselves and pull nothing) and, unless the user chose
// otherwise, 127.0.0.1 as the host where published ports are found (inside a
// container testcontainers would guess the default gateway, which is not where
// ports published on 127.0.0.1 are). Its chatty log goes to slog at debug level.
func configureTestcontainers() {
	os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	if os.Getenv("TESTCONTAINERS_HOST_OVERRIDE") == "" {
		os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
	tclog.SetDefault(debugLogger{})
}

// debugLogger routes testcontainers' Printf logging to slog at debug level.
type debugLogger struct{}

func (debugLogger) Printf(format string, v ...any) {
	slog.Debug("testcontainers: " + fmt.Sprintf(format, v...))
}

// connect opens the process's connection to Docker once and checks that it answers.
func connect(ctx context.Context) (*daemon, error) {
	daemonOnce.Do(func() {
		configureTestcontainers()
		// testcontainers falls back to /var/run/docker.sock when DOCKER_HOST does not
		// answer; a user who named a daemon means that one.
		if host := os.Getenv("DOCKER_HOST"); host != "" {
			if err := pingEnvHost(ctx); err != nil {
				daemonErr = fmt.Errorf("containers: %w at DOCKER_HOST=%s: %v", ErrNoDaemon, host, err)
				return
			}
		}
		p, err := testcontainers.NewDockerProvider()
		if err != nil {
			daemonErr = fmt.Errorf("containers: %w: %v", ErrNoDaemon, err)
			return
		}
		daemonConn = &daemon{provider: p, cli: p.Client()}
	})
	if daemonErr != nil {
		return nil, daemonErr
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := daemonConn.cli.Ping(pctx, client.PingOptions{}); err != nil {
		return nil, fmt.Errorf("containers: %w: %v", ErrNoDaemon, err)
	}
	return daemonConn, nil
}

// pingEnvHost asks the daemon named by the environment (DOCKER_HOST) whether it answers.
func pingEnvHost(ctx context.Context) error {
	c, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	_, err = c.Ping(ctx, client.PingOptions{})
	return err
}

// Available reports whether a Docker daemon answers; the error wraps ErrNoDaemon and
// says why not.
func Available(ctx context.Context) error {
	_, err := connect(ctx)
	return err
}
