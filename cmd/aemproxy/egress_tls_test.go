package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/aemproxy/aemproxy/internal/config"
	"github.com/aemproxy/aemproxy/internal/sim"
)

// egressPKI is one CA that issues the servers' certificates and aemproxy's
// client certificate, all written to files in dir.
type egressPKI struct {
	dir                 string
	ca                  *sim.CA
	caFile              string
	clientCert          string
	clientKey           string
	clientKeyPEM        []byte
	otherKey, encrypted string
}

func newEgressPKI(t *testing.T) *egressPKI {
	t.Helper()
	ca, err := sim.NewCA("egress test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &egressPKI{dir: t.TempDir(), ca: ca}
	p.caFile = p.write(t, "ca.pem", ca.PEM())
	certPEM, keyPEM, err := ca.Issue("aemproxy-client", false)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey, p.clientKeyPEM = p.write(t, "client.crt", certPEM), p.write(t, "client.key", keyPEM), keyPEM
	_, otherPEM, err := ca.Issue("someone-else", false)
	if err != nil {
		t.Fatal(err)
	}
	p.otherKey = p.write(t, "other.key", otherPEM)
	p.encrypted = p.write(t, "encrypted.key", pem.EncodeToMemory(&pem.Block{
		Type:    "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   bytes.Repeat([]byte{0x5a}, 64),
	}))
	return p
}

func (p *egressPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mtlsServer is an HTTPS server on 127.0.0.1, with a certificate for
// exactly one DNS name, in front of a simulated IMS or AEM. It requires a
// client certificate from the CA and records the SNI and the client
// certificate name of every connection.
type mtlsServer struct {
	*httptest.Server
	mu      sync.Mutex
	sni     []string
	clients []string
}

func startMTLS(t *testing.T, p *egressPKI, dnsName string, h http.Handler) *mtlsServer {
	t.Helper()
	certPEM, keyPEM, err := p.ca.IssueServer(dnsName, dnsName)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.ca.Cert)
	s := &mtlsServer{}
	s.Server = httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		VerifyConnection: func(cs tls.ConnectionState) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.sni = append(s.sni, cs.ServerName)
			if len(cs.PeerCertificates) > 0 {
				s.clients = append(s.clients, cs.PeerCertificates[0].Subject.CommonName)
			}
			return nil
		},
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are part of the tests
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// seen returns the SNI and client certificate names of the connections so
// far.
func (s *mtlsServer) seen() (sni, clients []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sni...), append([]string(nil), s.clients...)
}

// assertNoKeyMaterial fails when a line of a PEM key's body is in text.
func assertNoKeyMaterial(t *testing.T, text string, keyPEM []byte) {
	t.Helper()
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(text, line) {
			t.Errorf("key material %q found in output", line)
		}
	}
}

// TestUpstreamRequiringClientCertificate runs the proxy against an AEM
// that requires a client certificate and serves a certificate for
// aem.internal alone on 127.0.0.1: the proxy presents its certificate and
// verifies AEM as aem.internal.
func TestUpstreamRequiringClientCertificate(t *testing.T) {
	p := newEgressPKI(t)
	var aem *mtlsServer
	h := startHarness(t, harnessOptions{credentials: func(h *harness) []string {
		// Runs once the simulated AEM exists; the later --upstream wins.
		aem = startMTLS(t, p, "aem.internal", h.aem)
		return []string{"--credentials", h.credsPath, "--upstream", aem.URL,
			"--upstream-ca-file", p.caFile,
			"--upstream-client-cert-file", p.clientCert, "--upstream-client-key-file", p.clientKey,
			"--upstream-server-name", "aem.internal",
		}
	}})
	h.waitReady(http.StatusOK)

	// The server really refuses a client without a certificate.
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	noCert := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "aem.internal"}}
	defer noCert.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: noCert}).Get(aem.URL + "/content/a.json"); err == nil {
		resp.Body.Close()
		t.Fatalf("AEM answered %d to a client without a certificate; want the handshake refused", resp.StatusCode)
	}

	resp, body := h.get("/content/wknd/en.model.json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("through the proxy: got %d %s; want 200", resp.StatusCode, body)
	}
	auth := h.lastAEMRequest().Header.Get("Authorization")
	if token, ok := strings.CutPrefix(auth, "Bearer "); !ok || h.ims.ValidateAccessToken(token) != nil {
		t.Errorf("AEM got Authorization %q; want a bearer token the IMS issued", auth)
	}
	sni, clients := aem.seen()
	if len(clients) == 0 || clients[len(clients)-1] != "aemproxy-client" {
		t.Errorf("AEM saw client certificates %q; want aemproxy-client", clients)
	}
	if len(sni) == 0 || sni[len(sni)-1] != "aem.internal" {
		t.Errorf("AEM saw SNI %q; want aem.internal", sni)
	}

	// The simulated CA's certificates are valid for a day: a warning at
	// start says so.
	m := h.waitLog("client certificate expires within 30 days: renew it (it is reloaded without a restart)")
	if m["level"] != "warn" || m["route"] != "default" || m["egress"] != "upstream" || m["cert_file"] != p.clientCert {
		t.Errorf("expiry warning: got %v; want level warn, route default, egress upstream, cert_file %s", m, p.clientCert)
	}
	assertNoKeyMaterial(t, h.logs.String(), p.clientKeyPEM)
}

// TestIMSOverMutualTLSWithServerName reaches IMS on 127.0.0.1 through a
// certificate for ims.internal alone, presenting a client certificate, all
// set in the config file with paths relative to it.
func TestIMSOverMutualTLSWithServerName(t *testing.T) {
	p := newEgressPKI(t)
	cfgPath := p.write(t, "aemproxy.yaml", []byte(`
ims:
  ca_file: ca.pem
  client_cert_file: client.crt
  client_key_file: client.key
  server_name: ims.internal
`))
	var ims *mtlsServer
	h := startHarness(t, harnessOptions{
		extra: []string{"--config", cfgPath},
		credentials: func(h *harness) []string {
			// Runs once the simulated IMS exists; the later --ims-url wins.
			ims = startMTLS(t, p, "ims.internal", h.ims)
			return []string{"--credentials", h.credsPath, "--ims-url", ims.URL}
		},
	})
	h.waitReady(http.StatusOK)
	if n := h.ims.Exchanges(); n == 0 {
		t.Fatal("ready, but the IMS saw no exchange")
	}
	sni, clients := ims.seen()
	if len(sni) == 0 || sni[0] != "ims.internal" || len(clients) == 0 || clients[0] != "aemproxy-client" {
		t.Errorf("IMS saw SNI %q and client certificates %q; want ims.internal and aemproxy-client", sni, clients)
	}
	resp, body := h.get("/content/a.json")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("through the proxy: got %d %s; want 200", resp.StatusCode, body)
	}
	m := h.waitLog("client certificate expires within 30 days: renew it (it is reloaded without a restart)")
	if m["egress"] != "ims" || m["cert_file"] != p.clientCert {
		t.Errorf("expiry warning: got %v; want egress ims, cert_file %s", m, p.clientCert)
	}
}

func TestCheckReportsEgressTLS(t *testing.T) {
	p := newEgressPKI(t)
	check := func(yaml string) (stdout string, err error) {
		t.Helper()
		path := p.write(t, "check.yaml", []byte(yaml))
		var out, stderr bytes.Buffer
		err = run(context.Background(), []string{"aemproxy", "check", "--config", path}, func(string) string { return "" }, &out, &stderr)
		text := out.String() + stderr.String()
		if err != nil {
			text += err.Error()
		}
		assertNoKeyMaterial(t, text, p.clientKeyPEM)
		return out.String(), err
	}

	out, err := check(`
ims:
  client_cert_file: client.crt
  client_key_file: client.key
routes:
  - name: a
    upstream: https://10.1.2.3
    credentials_kind: none
    ca_file: ca.pem
    client_cert_file: client.crt
    client_key_file: client.key
    server_name: aem.internal
`)
	if err != nil {
		t.Fatalf("check of good egress TLS: %v", err)
	}
	for _, want := range []string{"ims: client certificate OK; WARNING: it expires in 0 days", "route a: upstream client certificate OK; WARNING: it expires in 0 days"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output %q does not mention %q", out, want)
		}
	}

	_, err = check(`
ims:
  client_cert_file: client.crt
  client_key_file: other.key
routes:
  - name: a
    upstream: https://10.1.2.3
    credentials_kind: none
    client_cert_file: client.crt
    client_key_file: encrypted.key
    server_name: "aem.internal:443"
  - name: b
    upstream: https://10.1.2.4
    credentials_kind: none
    client_key_file: client.key
`)
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("check of broken egress TLS: got %v; want problems and exit 1", err)
	}
	for _, want := range []string{
		"config: ims.client_key_file: " + p.otherKey + " does not match the certificate",
		"config: routes[0] (a).client_key_file: " + p.encrypted + " holds an encrypted private key; decrypt it",
		"config: routes[0] (a).server_name:",
		"config: routes[1] (b).client_cert_file: missing",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check error %q does not mention %q", err, want)
		}
	}
	if n := strings.Count(err.Error(), "does not match"); n != 1 {
		t.Errorf("the mismatched IMS pair is reported %d times; want once:\n%v", n, err)
	}
}

func TestCheckEgressExpired(t *testing.T) {
	p := newEgressPKI(t)
	cfg := config.Default()
	cfg.IMS.ClientCertFile, cfg.IMS.ClientKeyFile = p.clientCert, p.clientKey
	var out bytes.Buffer
	problems := checkEgress(cfg, time.Now().Add(48*time.Hour), &out)
	if len(problems) != 1 || !strings.Contains(problems[0], "ims: client certificate (ims.client_cert_file "+p.clientCert+") expired at") {
		t.Errorf("two days on: got problems %q, output %q; want the IMS client certificate reported expired", problems, out.String())
	}
	out.Reset()
	if problems := checkEgress(cfg, time.Now().Add(-60*24*time.Hour), &out); len(problems) != 0 || !strings.Contains(out.String(), "ims: client certificate OK, valid until") {
		t.Errorf("60 days before: got problems %q, output %q; want OK and a date", problems, out.String())
	}
}

func TestLogClientCertExpiry(t *testing.T) {
	notAfter := time.Date(2030, 1, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		now       time.Time
		wantLevel string // "" for no line
	}{
		{"no certificate", notAfter, ""},
		{"far from its end", notAfter.Add(-31 * 24 * time.Hour), ""},
		{"within 30 days", notAfter.Add(-29 * 24 * time.Hour), "warn"},
		{"expired", notAfter.Add(time.Second), "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			na := notAfter
			if tt.name == "no certificate" {
				na = time.Time{}
			}
			logClientCertExpiry(zerolog.New(&buf), "/etc/aemproxy/client.crt", na, tt.now)
			if tt.wantLevel == "" {
				if buf.Len() > 0 {
					t.Errorf("got %q; want no log line", buf.String())
				}
				return
			}
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("log %q: %v", buf.String(), err)
			}
			if m["level"] != tt.wantLevel || m["cert_file"] != "/etc/aemproxy/client.crt" || m["not_after"] == nil {
				t.Errorf("got %v; want level %s with cert_file and not_after", m, tt.wantLevel)
			}
		})
	}
}
