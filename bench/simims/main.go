// Command simims serves the simulated Adobe IMS (internal/sim) on loopback
// for bench/run.sh, and writes a generated service credentials file that
// aemproxy can use against it with --ims-url.
//
//	POST /ims/exchange/jwt   the JWT exchange, as sim.IMS implements it
//	GET  /bench/stats        {"exchanges":N,"issued":N}
//
// Tokens live for --token-lifetime; aemproxy's cache refreshes a token at
// 2/3 of its lifetime but no later than half of it before expiry, so a 30 s
// lifetime rotates the token every 15 s.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "simims:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("simims", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback)")
	addrFile := fs.String("addr-file", "", "write the listening address here once ready")
	credsPath := fs.String("credentials", "", "write generated service credentials here (required)")
	lifetime := fs.Duration("token-lifetime", 24*time.Hour, "lifetime of issued access tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *credsPath == "" {
		return errors.New("--credentials is required")
	}

	creds, err := sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		return err
	}
	ims, err := sim.NewIMS(sim.IMSOptions{TokenLifetime: *lifetime})
	if err != nil {
		return err
	}
	ims.Register(creds)
	b, err := creds.JSON(sim.JSONOptions{})
	if err != nil {
		return err
	}
	if err := os.WriteFile(*credsPath, b, 0o600); err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/", ims)
	mux.HandleFunc("GET /bench/stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"exchanges":%d,"issued":%d}`+"\n", ims.Exchanges(), ims.Issued())
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return nil
}
