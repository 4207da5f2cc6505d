// Command upstream is the origin that bench/run.sh puts behind aemproxy,
// nginx and Caddy: a small, fast stand-in for AEM that answers only
// requests carrying a bearer token.
//
//	GET  /json          1 KiB of JSON
//	GET  /bytes?n=N     N bytes, streamed, with Content-Length
//	PUT  /upload        reads and counts the body, answers {"bytes":N}
//	GET  /stats         request counters (no token needed)
//
// A request without "Authorization: Bearer <something>" gets 401 and is
// counted, so a benchmark that forgot the credential shows it.
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
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback)")
	addrFile := fs.String("addr-file", "", "write the listening address here once ready")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	u := newUpstream()
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

type upstream struct {
	json          []byte
	zeros         []byte
	requests      atomic.Uint64
	unauthorized  atomic.Uint64
	uploadedBytes atomic.Uint64
}

func newUpstream() *upstream {
	// 1 KiB of plausible JSON: a content fragment with a padded text field.
	head := `{"jcr:primaryType":"cq:PageContent","jcr:title":"Adventures","sling:resourceType":"wknd/components/page","text":"`
	tail := `"}` + "\n"
	pad := strings.Repeat("x", 1024-len(head)-len(tail))
	return &upstream{
		json:  []byte(head + pad + tail),
		zeros: make([]byte, 256<<10),
	}
}

var (
	jsonType   = []string{"application/json"}
	binaryType = []string{"application/octet-stream"}
)

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stats" {
		fmt.Fprintf(w, `{"requests":%d,"unauthorized":%d,"uploaded_bytes":%d}`+"\n",
			u.requests.Load(), u.unauthorized.Load(), u.uploadedBytes.Load())
		return
	}
	u.requests.Add(1)
	if a := r.Header.Get("Authorization"); len(a) <= len("Bearer ") || !strings.EqualFold(a[:len("Bearer ")], "Bearer ") {
		u.unauthorized.Add(1)
		http.Error(w, "no bearer token", http.StatusUnauthorized)
		return
	}
	h := w.Header()
	switch r.URL.Path {
	case "/json":
		h["Content-Type"] = jsonType
		h["Content-Length"] = []string{strconv.Itoa(len(u.json))}
		w.Write(u.json)
	case "/bytes":
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want n=bytes", http.StatusBadRequest)
			return
		}
		h["Content-Type"] = binaryType
		h["Content-Length"] = []string{strconv.FormatInt(n, 10)}
		for n > 0 {
			k := min(n, int64(len(u.zeros)))
			if _, err := w.Write(u.zeros[:k]); err != nil {
				return
			}
			n -= k
		}
	case "/upload":
		if r.Method != http.MethodPut && r.Method != http.MethodPost {
			http.Error(w, "PUT or POST", http.StatusMethodNotAllowed)
			return
		}
		n, err := drain(r.Body, make([]byte, 256<<10))
		u.uploadedBytes.Add(uint64(n))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h["Content-Type"] = jsonType
		fmt.Fprintf(w, `{"bytes":%d}`+"\n", n)
	default:
		http.NotFound(w, r)
	}
}

// drain reads r to the end through buf. (io.Copy to io.Discard would use
// Discard's own small buffer.)
func drain(r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}
