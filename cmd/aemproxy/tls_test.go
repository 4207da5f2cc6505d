package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

	// presented returns the CommonName of the certificate a new handshake
	// presents.
	presented := func() string {
		t.Helper()
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "localhost", Certificates: []tls.Certificate{f.good}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
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
