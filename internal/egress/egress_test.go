package egress

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
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

	"github.com/aemproxy/aemproxy/internal/sim"
)

// pki is a CA with its certificate in a file, and helpers to write client
// pairs it issues.
type pki struct {
	dir    string
	ca     *sim.CA
	caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := sim.NewCA("egress test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca}
	p.caFile = writeFile(t, p.dir, "ca.pem", ca.PEM())
	return p
}

// clientPair writes a client certificate named name and its key to
// name.crt and name.key and returns the paths and the key's PEM.
func (p *pki) clientPair(t *testing.T, name string) (certFile, keyFile string, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := p.ca.Issue(name, false)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, p.dir, name+".crt", certPEM), writeFile(t, p.dir, name+".key", keyPEM), keyPEM
}

// writeFile writes data to dir/name the way an operator (or cert-manager)
// should: to a temporary name, then renamed into place.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// server is a TLS server on 127.0.0.1 that requires a client certificate
// from ca and records, per connection, the SNI it was sent and the name of
// the client certificate it got.
type server struct {
	*httptest.Server
	mu      sync.Mutex
	sni     []string
	clients []string
}

func newServer(t *testing.T, ca *sim.CA, certPEM, keyPEM []byte, clientAuth tls.ClientAuthType) *server {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := ""
		if len(r.TLS.PeerCertificates) > 0 {
			name = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Lock()
		s.clients = append(s.clients, name)
		s.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   clientAuth,
		ClientCAs:    clientCAs,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			s.mu.Lock()
			s.sni = append(s.sni, hello.ServerName)
			s.mu.Unlock()
			return nil, nil
		},
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// lastClient returns the client certificate name of the last request.
func (s *server) lastClient() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.clients) == 0 {
		return ""
	}
	return s.clients[len(s.clients)-1]
}

func (s *server) lastSNI() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sni) == 0 {
		return ""
	}
	return s.sni[len(s.sni)-1]
}

// get makes one request on a new connection, so a new handshake.
func get(conf *tls.Config, url string) error {
	tr := &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func load(t *testing.T, s TLS) *Client {
	t.Helper()
	c, err := s.Load(nil, zerolog.Nop())
	if err != nil {
		t.Fatalf("Load(%+v): %v", s, err)
	}
	return c
}

func TestClientCertificate(t *testing.T) {
	p := newPKI(t)
	certPEM, keyPEM, err := p.ca.Issue("aem", true)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, p.ca, certPEM, keyPEM, tls.RequireAndVerifyClientCert)
	certFile, keyFile, _ := p.clientPair(t, "aemproxy-client")

	withCert := load(t, TLS{CAFile: p.caFile, CertFile: certFile, KeyFile: keyFile})
	if err := get(withCert.Config(), srv.URL); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	if got := srv.lastClient(); got != "aemproxy-client" {
		t.Errorf("server saw client certificate %q; want aemproxy-client", got)
	}

	caOnly := load(t, TLS{CAFile: p.caFile})
	if err := get(caOnly.Config(), srv.URL); err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("without a client certificate: got %v; want the server's certificate required alert", err)
	}
	noCA := load(t, TLS{CertFile: certFile, KeyFile: keyFile})
	if err := get(noCA.Config(), srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without ca_file: got %v; want a certificate verification error", err)
	}
}

func TestServerNameOverride(t *testing.T) {
	p := newPKI(t)
	// A certificate for aem.internal alone, served on 127.0.0.1.
	certPEM, keyPEM, err := p.ca.IssueServer("aem", "aem.internal")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, p.ca, certPEM, keyPEM, tls.NoClientCert)

	if err := get(load(t, TLS{CAFile: p.caFile, ServerName: "aem.internal"}).Config(), srv.URL); err != nil {
		t.Fatalf("with server_name aem.internal: %v", err)
	}
	if got := srv.lastSNI(); got != "aem.internal" {
		t.Errorf("server saw SNI %q; want aem.internal", got)
	}
	err = get(load(t, TLS{CAFile: p.caFile}).Config(), srv.URL)
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("without server_name: got %v; want an x509.HostnameError (the certificate is not for 127.0.0.1)", err)
	}
}

func TestConfig(t *testing.T) {
	p := newPKI(t)
	certFile, keyFile, _ := p.clientPair(t, "client")

	zero := load(t, TLS{})
	c := zero.Config()
	if c.MinVersion != tls.VersionTLS12 || c.RootCAs != nil || c.ServerName != "" || c.GetClientCertificate != nil {
		t.Errorf("zero settings: got MinVersion %x, RootCAs %v, ServerName %q, client certificate %v; want TLS 1.2, system roots, none, none",
			c.MinVersion, c.RootCAs, c.ServerName, c.GetClientCertificate != nil)
	}
	if !zero.NotAfter().IsZero() {
		t.Errorf("NotAfter without a client certificate: got %v; want zero", zero.NotAfter())
	}

	full := load(t, TLS{CAFile: p.caFile, CertFile: certFile, KeyFile: keyFile, ServerName: "aem.internal"})
	c = full.Config()
	if c.RootCAs == nil || c.ServerName != "aem.internal" || c.GetClientCertificate == nil {
		t.Errorf("full settings: got RootCAs %v, ServerName %q, client certificate %v", c.RootCAs != nil, c.ServerName, c.GetClientCertificate != nil)
	}
	c.ServerName = "changed"
	if got := full.Config().ServerName; got != "aem.internal" {
		t.Errorf("a caller's change reached the next Config: ServerName %q", got)
	}
	leaf := presented(t, full)
	if !full.NotAfter().Equal(leaf.NotAfter) || full.NotAfter().IsZero() {
		t.Errorf("NotAfter: got %v; want the certificate's %v", full.NotAfter(), leaf.NotAfter)
	}
}

// presented returns the leaf certificate a handshake with c presents.
func presented(t *testing.T, c *Client) *x509.Certificate {
	t.Helper()
	cert, err := c.Config().GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf
}

func TestLoadErrors(t *testing.T) {
	p := newPKI(t)
	certFile, keyFile, keyPEM := p.clientPair(t, "client")
	_, otherKey, otherKeyPEM := p.clientPair(t, "other")
	missing := filepath.Join(p.dir, "missing.pem")
	notPEM := writeFile(t, p.dir, "not.pem", []byte("hello\n"))
	random := make([]byte, 200)
	rand.Read(random)
	encryptedPKCS8 := writeFile(t, p.dir, "enc8.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: random}))
	encryptedLegacy := writeFile(t, p.dir, "enclegacy.key", pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   random,
	}))
	garbageKey := writeFile(t, p.dir, "garbage.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: random}))

	tests := []struct {
		name string
		tls  TLS
		want []string // each a substring of the error
	}{
		{"cert without key", TLS{CertFile: certFile}, []string{"client_key_file: missing; client_cert_file needs"}},
		{"key without cert", TLS{KeyFile: keyFile}, []string{"client_cert_file: missing; client_key_file needs"}},
		{"missing CA file", TLS{CAFile: missing}, []string{"ca_file: open " + missing, "no such file"}},
		{"CA file without certificates", TLS{CAFile: notPEM}, []string{"ca_file: " + notPEM + " holds no PEM certificate"}},
		{"missing certificate file", TLS{CertFile: missing, KeyFile: keyFile}, []string{"client_cert_file: stat " + missing}},
		{"missing key file", TLS{CertFile: certFile, KeyFile: missing}, []string{"client_key_file: stat " + missing}},
		{"no PEM certificate", TLS{CertFile: notPEM, KeyFile: keyFile}, []string{"client_cert_file: " + notPEM + " holds no PEM certificate"}},
		{"no PEM private key", TLS{CertFile: certFile, KeyFile: notPEM}, []string{"client_key_file: " + notPEM + " holds no PEM private key"}},
		{"both files hold nothing", TLS{CertFile: notPEM, KeyFile: notPEM}, []string{"no PEM certificate", "no PEM private key"}},
		{"swapped", TLS{CertFile: keyFile, KeyFile: certFile}, []string{"holds no PEM certificate", "swapped?", "holds no PEM private key"}},
		{"encrypted PKCS#8 key", TLS{CertFile: certFile, KeyFile: encryptedPKCS8}, []string{"client_key_file: " + encryptedPKCS8 + " holds an encrypted private key; decrypt it", "encrypted keys are not supported"}},
		{"encrypted legacy key", TLS{CertFile: certFile, KeyFile: encryptedLegacy}, []string{"encrypted private key; decrypt it"}},
		{"garbage key", TLS{CertFile: certFile, KeyFile: garbageKey}, []string{"client_key_file: " + garbageKey + ": the PRIVATE KEY block is not a valid private key"}},
		{"key of another certificate", TLS{CertFile: certFile, KeyFile: otherKey}, []string{"client_key_file: " + otherKey + " does not match the certificate in client_cert_file " + certFile}},
		{"server name with port", TLS{ServerName: "aem.internal:443"}, []string{`server_name: "aem.internal:443" is not a host name`, "without scheme, port or path"}},
		{"server name URL", TLS{ServerName: "https://aem.internal"}, []string{"server_name:", "without scheme"}},
		{"wildcard server name", TLS{ServerName: "*.internal"}, []string{`server_name: "*.internal" is not a host name`}},
		{"server name with space", TLS{ServerName: "aem internal"}, []string{"server_name:"}},
		{"every problem at once", TLS{CAFile: notPEM, CertFile: certFile, KeyFile: encryptedPKCS8, ServerName: "a..b"},
			[]string{"ca_file:", "client_key_file:", "server_name:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.tls.Load(nil, zerolog.Nop())
			if err == nil {
				t.Fatalf("Load: got %v, nil error; want one mentioning %q", c, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
			for _, problem := range tt.tls.Check() {
				if !startsWithKey(problem.Error()) {
					t.Errorf("problem %q is not one line beginning with the key of its setting", problem)
				}
			}
			for _, key := range [][]byte{keyPEM, otherKeyPEM, random} {
				if line := secretLine(err.Error(), key); line != "" {
					t.Errorf("error reveals key material %q: %q", line, err)
				}
			}
		})
	}

	for _, name := range []string{"aem.internal", "AEM-1.corp.example", "localhost", "10.0.0.7", "fd00::1"} {
		if problems := (TLS{ServerName: name}).Check(); len(problems) > 0 {
			t.Errorf("server name %q: got %v; want it accepted", name, problems)
		}
	}
}

// startsWithKey reports whether a problem is one line that begins with a
// setting's key, so that a caller can put the section in front.
func startsWithKey(problem string) bool {
	if strings.Contains(problem, "\n") {
		return false
	}
	for _, key := range []string{"ca_file: ", "client_cert_file: ", "client_key_file: ", "server_name: "} {
		if strings.HasPrefix(problem, key) {
			return true
		}
	}
	return false
}

// secretLine returns a line of the PEM key's body (or of raw bytes, base64
// encoded as PEM would) found in s, or "".
func secretLine(s string, key []byte) string {
	body := key
	if !bytes.HasPrefix(key, []byte("-----BEGIN")) {
		body = pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: key})
	}
	for _, line := range strings.Split(string(body), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(s, line) {
			return line
		}
	}
	return ""
}

func TestClientCertificateReload(t *testing.T) {
	p := newPKI(t)
	serverCert, serverKey, err := p.ca.Issue("aem", true)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, p.ca, serverCert, serverKey, tls.RequireAndVerifyClientCert)
	certFile, keyFile, _ := p.clientPair(t, "client-1")

	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); now = now.Add(checkInterval); mu.Unlock() }
	var logs bytes.Buffer
	c, err := TLS{CAFile: p.caFile, CertFile: certFile, KeyFile: keyFile}.Load(clock, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	conf := c.Config()
	// connect makes a new connection with the transport's one tls.Config
	// and returns the client certificate the server saw.
	connect := func() string {
		t.Helper()
		if err := get(conf, srv.URL); err != nil {
			t.Fatal(err)
		}
		return srv.lastClient()
	}
	if got := connect(); got != "client-1" {
		t.Fatalf("first connection presented %q; want client-1", got)
	}

	// Renewed on disk (a longer name, so the size changes whatever the
	// file system's time resolution).
	renewedCert, renewedKey, err := p.ca.Issue("client-renewed", false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.dir, filepath.Base(keyFile), renewedKey)
	writeFile(t, p.dir, filepath.Base(certFile), renewedCert)
	if got := connect(); got != "client-1" {
		t.Errorf("within the check interval: presented %q; want client-1 still", got)
	}
	advance()
	if got := connect(); got != "client-renewed" {
		t.Errorf("after the interval: presented %q; want client-renewed", got)
	}
	if got, want := c.NotAfter(), presented(t, c).NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter after the reload: got %v; want the renewed certificate's %v", got, want)
	}
	if !strings.Contains(logs.String(), "client certificate reloaded") {
		t.Errorf("no reload log line; logs:\n%s", logs.String())
	}

	// A new certificate whose key is not in place yet is refused once, and
	// the current pair stays.
	nextCert, _, err := p.ca.Issue("client-third-one", false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.dir, filepath.Base(certFile), nextCert)
	advance()
	if got := connect(); got != "client-renewed" {
		t.Errorf("after a mismatched pair: presented %q; want client-renewed kept", got)
	}
	advance()
	connect()
	if n := strings.Count(logs.String(), "client certificate files refused"); n != 1 {
		t.Errorf("refused pair logged %d times; want once; logs:\n%s", n, logs.String())
	}
	if line := secretLine(logs.String(), renewedKey); line != "" {
		t.Errorf("log reveals key material %q", line)
	}

	// Many handshakes at once while a check is due: one looks, the others
	// go on with the current pair (run with -race).
	advance()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if cert, err := conf.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil || cert == nil {
				t.Errorf("GetClientCertificate: %v, %v", cert, err)
			}
		})
	}
	wg.Wait()
}

// TestReloadNow is SIGHUP's path: the renewed pair is taken at once, within
// the check interval and before any handshake; a broken pair is refused
// with the reason and the current one kept.
func TestReloadNow(t *testing.T) {
	p := newPKI(t)
	certFile, keyFile, _ := p.clientPair(t, "client-1")
	now := time.Unix(1_700_000_000, 0)
	var logs bytes.Buffer
	c, err := TLS{CAFile: p.caFile, CertFile: certFile, KeyFile: keyFile}.Load(func() time.Time { return now }, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload with unchanged files: %v", err)
	}
	if strings.Contains(logs.String(), "reloaded") {
		t.Error("unchanged files were read again")
	}
	renewedCert, renewedKey, err := p.ca.Issue("client-renewed", false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.dir, filepath.Base(keyFile), renewedKey)
	writeFile(t, p.dir, filepath.Base(certFile), renewedCert)
	if err := c.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := presented(t, c).Subject.CommonName; got != "client-renewed" {
		t.Errorf("after Reload presented %q; want client-renewed", got)
	}

	// A much longer name, so that the size changes whatever the file
	// system's time resolution.
	nextCert, _, err := p.ca.Issue("client-third-with-a-much-longer-common-name", false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.dir, filepath.Base(certFile), nextCert)
	err = c.Reload()
	if err == nil {
		t.Fatal("Reload took a certificate without its key")
	}
	if line := secretLine(err.Error(), renewedKey); line != "" {
		t.Errorf("the error reveals key material %q", line)
	}
	if got := presented(t, c).Subject.CommonName; got != "client-renewed" {
		t.Errorf("after a refused Reload presented %q; want client-renewed kept", got)
	}
	if err := (&Client{}).Reload(); err != nil {
		t.Errorf("Reload without a client certificate: %v", err)
	}
}
