package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// TestLogToAFileIsBufferedAndWrittenAtShutdown runs the program with its
// log going to a file, as stderr does in production: the access log line
// of a request waits in the buffer (the interval here is a minute) and is
// written when the program stops.
func TestLogToAFileIsBufferedAndWrittenAtShutdown(t *testing.T) {
	aem := httptest.NewServer(sim.NewAEM(nil))
	t.Cleanup(aem.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "aemproxy.yaml")
	if err := os.WriteFile(cfg, []byte("log:\n  flush_interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "stderr.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	args := []string{"aemproxy", "--config", cfg, "--listen", addr, "--admin-listen", "127.0.0.1:0",
		"--upstream", aem.URL, "--credentials-kind", "none"}
	go func() { done <- run(ctx, args, func(string) string { return "" }, io.Discard, logFile) }()

	var status int
	for range 500 {
		resp, err := http.Get("http://" + addr + "/content/logged.json")
		if err == nil {
			resp.Body.Close()
			status = resp.StatusCode
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if status != http.StatusOK {
		t.Fatalf("the proxy did not answer 200 (last status %d)", status)
	}
	logged := func() string {
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if strings.Contains(logged(), "/content/logged.json") {
		t.Fatal("the access log line was written at once; want it buffered")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancellation")
	}
	out := logged()
	if !strings.Contains(out, `"path":"/content/logged.json"`) || !strings.Contains(out, `"message":"request"`) {
		t.Fatalf("after shutdown the log lacks the access line:\n%s", out)
	}
}
