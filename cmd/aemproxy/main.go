// Command aemproxy is an authenticating reverse proxy for Adobe Experience
// Manager as a Cloud Service: it takes plain HTTP requests, adds an IMS
// access token it keeps fresh, and forwards them to AEM.
//
// Usage:
//
//	aemproxy [flags]          run the proxy (see -h)
//	aemproxy demo [flags]     run against a built-in simulated IMS and AEM
//	aemproxy token [flags]    exchange credentials once and print the token
//	aemproxy check [flags]    validate configuration and credentials
//	aemproxy version          print version information
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

// version and commit are set at build time:
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=$(git rev-parse HEAD)"
//
// An empty commit falls back to the vcs.revision that go build records when
// it builds inside a Git checkout (not in a container build, whose context
// has no .git).
var (
	version = "dev"
	commit  = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "aemproxy:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for usage errors, as with the flag package, 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	if errors.Is(err, flag.ErrHelp) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

// usageError marks a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run is the whole program. It returns when ctx is done and shutdown has
// finished, or at once on a configuration error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "version":
			fmt.Fprintln(stdout, versionString())
			return nil
		case "demo":
			return runDemo(ctx, args[2:], stdout, stderr)
		case "token":
			return runToken(ctx, args[2:], getenv, stdout, stderr)
		case "check":
			return runCheck(ctx, args[2:], getenv, stdout, stderr)
		case "help":
			args = []string{args[0], "-h"}
		}
	}
	cfg, err := loadConfig(args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	log, flush := newLogger(cfg.Log, stderr)
	defer flush()
	return serve(ctx, cfg, getenv, log)
}

// versionString is what "aemproxy version" prints: version, commit, Go
// version and platform. The commit is the -X main.commit value, else the
// VCS revision go build recorded (with "-dirty" for uncommitted changes),
// else "unknown".
func versionString() string {
	c := commit
	if bi, ok := debug.ReadBuildInfo(); ok && c == "" {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if c != "" && modified {
			c += "-dirty"
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("aemproxy %s (commit %s, %s, %s/%s)", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
