package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/sim"
)

// tlsFixture is a CA, the proxy's server certificate files, and client
// certificates from that CA and from another.
type tlsFixture struct {
	dir               string
	ca                *sim.CA
	roots             *x509.CertPool
	certFile, keyFile string
	good, foreign     tls.Certificate
	configPath        string
}

func newTLSFixture(t *testing.T) *tlsFixture {
	t.Helper()
	f := &tlsFixture{dir: t.TempDir()}
	var err error
	if f.ca, err = sim.NewCA("aemproxy test CA"); err != nil {
		t.Fatal(err)
	}
	other, err := sim.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.ca.Cert)
	f.certFile, f.keyFile = filepath.Join(f.dir, "server.crt"), filepath.Join(f.dir, "server.key")
	f.issueServer(t, "server-1", f.keyFile)
	f.good = clientCert(t, f.ca)
	f.foreign = clientCert(t, other)
	caFile := filepath.Join(f.dir, "clients-ca.pem")
	writeTestFile(t, caFile, f.ca.PEM())
	f.configPath = filepath.Join(f.dir, "aemproxy.yaml")
	writeTestFile(t, f.configPath, fmt.Appendf(nil, "tls:\n  cert_file: %s\n  key_file: %s\n  client_ca_file: %s\n", f.certFile, f.keyFile, caFile))
	return f
}

// issueServer writes a new server certificate, and its key to keyFile, the
// way an operator should: to a temporary name, then renamed into place.
func (f *tlsFixture) issueServer(t *testing.T, name, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := f.ca.Issue(name, true)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, keyFile, keyPEM)
	writeTestFile(t, f.certFile, certPEM)
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func clientCert(t *testing.T, ca *sim.CA) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue("client", false)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// presented returns the CommonName of the certificate a new handshake
// with addr presents.
func (f *tlsFixture) presented(t *testing.T, addr string) string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "localhost", Certificates: []tls.Certificate{f.good}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// transport makes a new connection, so a new handshake, for every request.
func (f *tlsFixture) transport(cert *tls.Certificate) *http.Transport {
	c := &tls.Config{RootCAs: f.roots, ServerName: "localhost"}
	if cert != nil {
		// Offer the certificate even when the server's list of acceptable
		// CAs does not name its issuer, as a careless or hostile client would.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Transport{TLSClientConfig: c, DisableKeepAlives: true}
}

func TestTLSListenerWithClientCertificates(t *testing.T) {
	f := newTLSFixture(t)
	h := startHarness(t, harnessOptions{extra: []string{"--config", f.configPath}})
	h.waitReady(http.StatusOK)
	addr := strings.TrimPrefix(h.proxy, "http://")
	base := "https://" + addr

	get := func(tr *http.Transport, path string) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	t.Run("good client certificate", func(t *testing.T) {
		resp, err := get(f.transport(&f.good), "/content/a.json")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d; want 200", resp.StatusCode)
		}
		if got := h.lastAEMRequest().Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto: got %q; want https", got)
		}
		h2 := f.transport(&f.good)
		h2.ForceAttemptHTTP2 = true
		if resp, err := get(h2, "/content/a.json"); err != nil || resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
			t.Errorf("HTTP/2: got %v %v; want 200 over HTTP/2", resp, err)
		}
		resp, err = get(f.transport(&f.good), "/bin/redirect?to=/content/next.html")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.Header.Get("Location"), base+"/content/next.html"; got != want {
			t.Errorf("Location: got %q; want %q", got, want)
		}
	})

	for _, tc := range []struct {
		name string
		cert *tls.Certificate
	}{
		{"client certificate from another CA", &f.foreign},
		{"no client certificate", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.aem.Count()
			resp, err := get(f.transport(tc.cert), "/content/a.json")
			if err == nil {
				t.Fatalf("got %d; want the TLS handshake refused", resp.StatusCode)
			}
			if !strings.Contains(err.Error(), "tls") {
				t.Errorf("got %v; want a TLS error", err)
			}
			if h.aem.Count() != before {
				t.Errorf("the request reached AEM")
			}
		})
	}

	t.Run("plain HTTP", func(t *testing.T) {
		before := h.aem.Count()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /content/a.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("got %d; want Go's 400 for HTTP on an HTTPS port", resp.StatusCode)
		}
		if h.aem.Count() != before {
			t.Errorf("the request reached AEM")
		}
	})

	presented := func() string { t.Helper(); return f.presented(t, addr) }
	// waitPresented polls handshakes (the files are looked at no more than
	// every tlsCheckInterval) for up to 10 s.
	waitPresented := func(want, logged string) {
		t.Helper()
		var got string
		for range 200 {
			if got = presented(); got == want && strings.Contains(h.logs.String(), logged) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("server certificate: got %q; want %q and a %q log line within 10s", got, want, logged)
	}

	t.Run("reload", func(t *testing.T) {
		if got := presented(); got != "server-1" {
			t.Fatalf("server certificate: got %q; want server-1", got)
		}
		f.issueServer(t, "server-2", f.keyFile)
		waitPresented("server-2", "TLS certificate reloaded")

		// A certificate whose key is not in place yet is refused, and the
		// current one stays.
		f.issueServer(t, "server-3", filepath.Join(f.dir, "elsewhere.key"))
		waitPresented("server-2", "TLS files refused; keeping the current certificate")
		resp, err := get(f.transport(&f.good), "/content/a.json")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("after a mismatched pair: got %v %v; want 200", resp, err)
		}
	})
}

func TestTLSFilesLookAtMostOncePerInterval(t *testing.T) {
	f := newTLSFixture(t)
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	var logs syncBuffer
	files, err := newTLSFiles(config.TLS{CertFile: f.certFile, KeyFile: f.keyFile}, clock, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		conf, err := files.ServerConfig().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return conf.Certificates[0].Leaf.Subject.CommonName
	}
	f.issueServer(t, "server-2", f.keyFile)
	if got := name(); got != "server-1" {
		t.Errorf("before the interval: got %q; want server-1 still", got)
	}
	now = now.Add(tlsCheckInterval)
	if got := name(); got != "server-2" {
		t.Errorf("after the interval: got %q; want server-2", got)
	}
	if err := os.WriteFile(f.keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := files.Reload(); err == nil {
		t.Errorf("Reload of a broken key: got nil; want an error")
	}
	if got := name(); got != "server-2" {
		t.Errorf("after a refused reload: got %q; want server-2 kept", got)
	}
}

// countLogs is how many JSON log lines carry the message msg.
func countLogs(logs, msg string) int {
	n := 0
	for line := range strings.Lines(logs) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
			n++
		}
	}
	return n
}

// TestSIGHUPReloadsTLSFilesAtOnce replaces the certificate and sends the
// process SIGHUP. No handshake happens between the two, so the change
// check that handshakes run (at most every tlsCheckInterval) cannot be what
// notices: the reload is SIGHUP's, and the very next handshake presents the
// new certificate. A pair that does not match is refused on SIGHUP too,
// and the current certificate stays.
func TestSIGHUPReloadsTLSFilesAtOnce(t *testing.T) {
	// While the test's own subscription stands, SIGHUP cannot end the test
	// binary, whatever the program under test does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f := newTLSFixture(t)
	// startHarness returns once the proxy logs that it listens, which serve
	// does after it subscribed to SIGHUP.
	h := startHarness(t, harnessOptions{extra: []string{"--config", f.configPath}})
	addr := strings.TrimPrefix(h.proxy, "http://")
	if got := f.presented(t, addr); got != "server-1" {
		t.Fatalf("server certificate: got %q; want server-1", got)
	}

	// sighup sends SIGHUP and waits, without any handshake, until the
	// program has logged want once more than before.
	sighup := func(want string) {
		t.Helper()
		before := countLogs(h.logs.String(), want)
		if err := self.Signal(syscall.SIGHUP); err != nil {
			t.Skipf("cannot send SIGHUP on this platform: %v", err)
		}
		select {
		case <-hup:
		case <-time.After(10 * time.Second):
			t.Fatal("SIGHUP not delivered within 10s")
		}
		deadline := time.Now().Add(10 * time.Second)
		for countLogs(h.logs.String(), want) == before {
			if time.Now().After(deadline) {
				t.Fatalf("no new %q log line within 10s of SIGHUP; logs:\n%s", want, h.logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	f.issueServer(t, "server-2", f.keyFile)
	sighup("TLS certificate reloaded")
	if got := f.presented(t, addr); got != "server-2" {
		t.Errorf("first handshake after SIGHUP: got %q; want server-2", got)
	}

	f.issueServer(t, "server-3", filepath.Join(f.dir, "elsewhere.key"))
	sighup("TLS files reload refused; keeping the current certificate")
	if got := f.presented(t, addr); got != "server-2" {
		t.Errorf("after a refused reload: got %q; want server-2 kept", got)
	}

	h.stop()
	<-h.done
	h.done <- nil
	for _, name := range []string{f.keyFile, filepath.Join(f.dir, "elsewhere.key")} {
		key, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if body := pemBody(key); strings.Contains(h.logs.String(), body) {
			t.Errorf("logs hold the private key of %s", name)
		}
	}
	if countLogs(h.logs.String(), "SIGHUP: reloading credentials, API keys, TLS files and outbound client certificates") != 2 {
		t.Errorf("want two SIGHUP log lines; logs:\n%s", h.logs)
	}
}

// TestTLSFlagsAndEnvironment configures TLS from all three places at once
// through run: the environment's certificate over the file's (which does
// not exist), the flag's key over the environment's (which does not exist),
// and client_auth from the flag (request) over the environment's (none)
// over the file's (require). request is observable: a client without a
// certificate is admitted, one from another CA is refused.
func TestTLSFlagsAndEnvironment(t *testing.T) {
	f := newTLSFixture(t)
	caFile := filepath.Join(f.dir, "clients-ca.pem")
	cfgPath := filepath.Join(f.dir, "flags.yaml")
	writeTestFile(t, cfgPath, fmt.Appendf(nil, "tls:\n  cert_file: %s\n  client_ca_file: %s\n  client_auth: require\n",
		filepath.Join(f.dir, "file-only.crt"), caFile))
	h := startHarness(t, harnessOptions{
		extra: []string{"--config", cfgPath, "--tls-key-file", f.keyFile, "--tls-client-auth", "request"},
		env: map[string]string{
			"AEMPROXY_TLS_CERT_FILE":   f.certFile,
			"AEMPROXY_TLS_KEY_FILE":    filepath.Join(f.dir, "env-only.key"),
			"AEMPROXY_TLS_CLIENT_AUTH": "none",
		},
	})
	if got := h.waitLog("proxy listening"); got["tls"] != true || got["client_auth"] != "request" {
		t.Errorf("proxy listening: tls %v, client_auth %v; want true, request", got["tls"], got["client_auth"])
	}
	base := "https://" + strings.TrimPrefix(h.proxy, "http://")
	for _, tc := range []struct {
		name  string
		cert  *tls.Certificate
		admit bool
	}{
		{"no client certificate", nil, true},
		{"client certificate from the CA", &f.good, true},
		{"client certificate from another CA", &f.foreign, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, base+"/content/a.json", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := f.transport(tc.cert).RoundTrip(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			switch {
			case tc.admit && (err != nil || resp.StatusCode != http.StatusOK):
				t.Errorf("got %v %v; want 200", resp, err)
			case !tc.admit && err == nil:
				t.Errorf("got %d; want the TLS handshake refused", resp.StatusCode)
			}
		})
	}
}

// TestTLSFlagErrors checks that bad TLS flags are all reported at once,
// naming the setting, before anything is served.
func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"aemproxy", "--upstream", "https://author-p1-e2.adobeaemcloud.com", "--credentials-kind", "none",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--tls-cert-file", filepath.Join(dir, "missing.crt"), "--tls-client-auth", "always"},
		func(k string) string {
			if k == "AEMPROXY_TLS_CLIENT_CA_FILE" {
				return filepath.Join(dir, "missing-ca.pem")
			}
			return ""
		}, io.Discard, &stderr)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("got %v; want a configuration error, exit 1", err)
	}
	for _, want := range []string{"tls.key_file: missing", "tls.cert_file:", "missing.crt", "missing-ca.pem", `tls.client_auth: "always"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}
