// Command startup measures how long a server takes from exec to ready, and
// its resident memory once idle, for bench/run.sh:
//
//	startup -url http://127.0.0.1:9090/readyz -runs 5 -- aemproxy --listen ...
//
// Each run starts the command, polls the URL every millisecond until it
// answers 200 (at most -timeout), waits -settle, reads VmRSS from
// /proc/PID/status, then stops the process with SIGTERM (SIGKILL after 5 s).
// It prints one line per run and a median line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "startup:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("startup", flag.ContinueOnError)
	url := fs.String("url", "", "readiness URL that answers 200 when the server is ready (required)")
	runs := fs.Int("runs", 5, "how many times to start the server")
	settle := fs.Duration("settle", time.Second, "wait this long after ready before reading RSS")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on a run after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmdline := fs.Args()
	if *url == "" || len(cmdline) == 0 || *runs < 1 || *runs > 50 {
		return errors.New("usage: startup -url URL [-runs N (1..50)] -- command [args]")
	}
	var ready []time.Duration
	var rss []int
	for i := range *runs {
		d, kib, err := once(*url, cmdline, *settle, *timeout)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("run %d: ready_ms=%.1f idle_rss_kib=%d\n", i+1, ms(d), kib)
		ready, rss = append(ready, d), append(rss, kib)
	}
	slices.Sort(ready)
	slices.Sort(rss)
	fmt.Printf("median: ready_ms=%.1f idle_rss_kib=%d\n", ms(ready[len(ready)/2]), rss[len(rss)/2])
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func once(url string, cmdline []string, settle, timeout time.Duration) (time.Duration, int, error) {
	cmd := exec.Command(cmdline[0], cmdline[1:]...) // output discarded
	client := &http.Client{Timeout: 100 * time.Millisecond}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer stop(cmd, exited)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		if res, err := client.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			return 0, 0, fmt.Errorf("exited before ready: %v", waitErr)
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("not ready after %v", timeout)
		case <-tick.C:
		}
	}
	d := time.Since(start)
	client.CloseIdleConnections()
	time.Sleep(settle)
	kib, err := vmRSS(cmd.Process.Pid)
	return d, kib, err
}

func stop(cmd *exec.Cmd, exited <-chan struct{}) {
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// vmRSS returns the process's resident set size in KiB.
func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
