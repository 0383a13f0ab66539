package local

import (
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
)

// watchdogScript keeps the list of process groups the supervisor runs and, when its
// stdin closes — Close, or the supervisor's process dying in any way, even SIGKILL —
// kills whatever is left of them. The parent-death signal only reaches the direct
// child; this also reaches its children (nginx's workers, an origin's ffmpeg). It
// ignores the terminal's signals so Ctrl-C cannot take it down before the parent.
const watchdogScript = `trap '' INT TERM HUP QUIT
groups=""
while read -r op g; do
  case "$op" in
    add) groups="$groups $g" ;;
    del) keep=""; for x in $groups; do [ "$x" = "$g" ] || keep="$keep $x"; done; groups=$keep ;;
  esac
done
for x in $groups; do kill -9 "-$x" 2>/dev/null; done
`

// watchdog is the supervisor's side of the watchdog process.
type watchdog struct {
	mu  sync.Mutex // protects w
	w   io.WriteCloser
	cmd *exec.Cmd
}

func startWatchdog() (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("local: start the watchdog (/bin/sh): %w", err)
	}
	return &watchdog{w: w, cmd: cmd}, nil
}

func (wd *watchdog) send(op string, pgid int) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w != nil {
		fmt.Fprintf(wd.w, "%s %d\n", op, pgid)
	}
}

// add registers a process group; del forgets it once it is gone.
func (wd *watchdog) add(pgid int) { wd.send("add", pgid) }
func (wd *watchdog) del(pgid int) { wd.send("del", pgid) }

// close ends the watchdog, which kills any group still registered, and waits for it.
func (wd *watchdog) close() {
	wd.mu.Lock()
	w := wd.w
	wd.w = nil
	wd.mu.Unlock()
	if w != nil {
		w.Close()
		wd.cmd.Wait()
	}
}
