package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/sim"
)

// runDemo starts a simulated IMS and AEM on loopback, writes generated
// service credentials to a temporary file and serves the real proxy against
// them, so that a newcomer sees the whole flow with no Adobe account.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("aemproxy demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "proxy listen address")
	adminListen := fs.String("admin-listen", "127.0.0.1:9090", "admin listen address")
	lifetime := fs.Duration("token-lifetime", 24*time.Hour, "lifetime of the simulated IMS's access tokens (try 2m to watch them rotate)")
	logFormat := fs.String("log-format", "console", "json or console")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: aemproxy demo [flags]\n\nRuns aemproxy against a built-in simulated Adobe IMS and AEM on loopback.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *lifetime < 2*time.Minute {
		return usageError{fmt.Errorf("--token-lifetime: %v is too short; use 2m or more", *lifetime)}
	}

	cfg := config.Default()
	cfg.Listen, cfg.AdminListen = *listen, *adminListen
	cfg.Log.Format = *logFormat
	cfg.ShutdownTimeout = 5 * time.Second
	log, flush := newLogger(cfg.Log, stderr)
	defer flush()

	creds, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	simIMS, err := sim.NewIMS(sim.IMSOptions{TokenLifetime: *lifetime, Logger: log.With().Str("component", "simulated_ims").Logger()})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	simIMS.Register(creds)
	simAEM := sim.NewAEM(simIMS.ValidateAccessToken)

	dir, err := os.MkdirTemp("", "aemproxy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	credsJSON, err := creds.JSON(sim.JSONOptions{})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	credsPath := filepath.Join(dir, "service-credentials.json")
	if err := os.WriteFile(credsPath, credsJSON, 0o600); err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	imsURL, stopIMS, err := serveLoopback(simIMS)
	if err != nil {
		return fmt.Errorf("demo: simulated IMS: %w", err)
	}
	defer stopIMS()
	aemURL, stopAEM, err := serveLoopback(simAEM)
	if err != nil {
		return fmt.Errorf("demo: simulated AEM: %w", err)
	}
	defer stopAEM()
	// Foreign redirects (asset binaries) point at a host that is not AEM.
	simAEM.BlobURL = "https://blob.demo.invalid"

	cfg.IMS.URL, _ = config.ParseURL(imsURL)
	upstream, _ := config.ParseURL(aemURL)
	cfg.Routes = []config.Route{config.RouteDefaults(config.Route{Name: "author", Upstream: upstream, Credentials: credsPath})}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo: invalid configuration:\n%w", indent(err))
	}

	fmt.Fprintf(stdout, `aemproxy demo
  simulated Adobe IMS  %s  (verifies the signed JWT like the real one)
  simulated AEM author %s  (answers 401 without a valid IMS token)
  service credentials  %s
  proxy                http://%s   admin http://%s

Try, in another terminal:
  curl -i http://%[4]s/content/wknd/en.model.json        # forwarded with a bearer token
  curl -i %[2]s/content/wknd/en.model.json     # straight to AEM: 401
  curl -i http://%[4]s/content/dam/wknd/hero.jpg/original   # a blob redirect, passed on as is
  curl -s http://%[5]s/readyz
  curl -s http://%[5]s/metrics | grep ^aemproxy_

Stop with Ctrl-C.
`, imsURL, aemURL, credsPath, cfg.Listen, cfg.AdminListen)

	return serve(ctx, cfg, func(string) string { return "" }, log)
}

// serveLoopback serves h on a free loopback port until stop is called.
func serveLoopback(h http.Handler) (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
