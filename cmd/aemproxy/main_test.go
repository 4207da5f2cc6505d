package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

// syncBuffer is an io.Writer the program logs to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs the real program through run() against a simulated IMS and
// AEM, all on 127.0.0.1.
type harness struct {
	t         *testing.T
	ims       *sim.IMS
	aem       *sim.AEM
	imsURL    string
	aemURL    string
	blob      *httptest.Server
	blobHits  chan http.Header
	creds     *sim.Credentials
	credsPath string
	proxy     string // http://127.0.0.1:port
	admin     string
	logs      *syncBuffer
	stop      context.CancelFunc
	done      chan error
}

type harnessOptions struct {
	imsDown bool
	extra   []string // more flags
	// credentials, if set, replaces --credentials with these flags.
	credentials func(h *harness) []string
	env         map[string]string
	stdout      io.Writer // run's stdout; nil discards it
	// aemCSRF makes the simulated AEM refuse writes without a CSRF token.
	aemCSRF bool
}

func startHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, done: make(chan error, 1), blobHits: make(chan http.Header, 16)}
	var err error
	h.creds, err = sim.NewCredentials(sim.CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.ims, err = sim.NewIMS(sim.IMSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.ims.Register(h.creds)
	h.ims.SetDown(o.imsDown)
	imsSrv := httptest.NewServer(h.ims)
	t.Cleanup(imsSrv.Close)
	h.imsURL = imsSrv.URL

	h.blob = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.blobHits <- r.Header.Clone():
		default:
		}
		io.WriteString(w, "blob")
	}))
	t.Cleanup(h.blob.Close)

	h.aem = sim.NewAEM(h.ims.ValidateAccessToken)
	h.aem.BlobURL = h.blob.URL
	h.aem.CSRF = o.aemCSRF
	aemSrv := httptest.NewServer(h.aem)
	t.Cleanup(aemSrv.Close)
	h.aemURL = aemSrv.URL

	data, err := h.creds.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h.credsPath = filepath.Join(t.TempDir(), "service-credentials.json")
	if err := os.WriteFile(h.credsPath, data, 0o600); err != nil {
		t.Fatal(err)
	}

	args := []string{"aemproxy",
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--upstream", h.aemURL, "--ims-url", h.imsURL, "--log-level", "debug",
	}
	if o.credentials != nil {
		args = append(args, o.credentials(h)...)
	} else {
		args = append(args, "--credentials", h.credsPath)
	}
	args = append(args, o.extra...)
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	getenv := func(k string) string { return o.env[k] }
	stdout := o.stdout
	if stdout == nil {
		stdout = io.Discard
	}
	go func() { h.done <- run(ctx, args, getenv, stdout, h.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("run did not return within 10s of cancellation")
		}
	})
	h.proxy = "http://" + h.waitLog("proxy listening")["addr"].(string)
	h.admin = "http://" + h.waitLog("admin listening")["addr"].(string)
	return h
}

// waitLog waits up to 10 s for a JSON log line with the given message.
func (h *harness) waitLog(msg string) map[string]any {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(h.logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
				return m
			}
		}
		select {
		case err := <-h.done:
			h.t.Fatalf("run returned %v before logging %q; logs:\n%s", err, msg, h.logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	h.t.Fatalf("no %q log line within 10s; logs:\n%s", msg, h.logs)
	return nil
}

// waitReady polls /readyz until it answers want, for up to 10 s.
func (h *harness) waitReady(want int) {
	h.t.Helper()
	var last int
	for range 1000 {
		resp, err := http.Get(h.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			last = resp.StatusCode
			if last == want {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("/readyz: got %d; want %d within 10s", last, want)
}

func (h *harness) do(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, string(body)
}

func (h *harness) get(path string) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.proxy+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(req)
}

// lastAEMRequest returns what AEM received last.
func (h *harness) lastAEMRequest() sim.Request {
	h.t.Helper()
	reqs := h.aem.Requests()
	if len(reqs) == 0 {
		h.t.Fatal("AEM received no request")
	}
	return reqs[len(reqs)-1]
}

func TestForwardsWithTokenAndCleanHeaders(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)

	req, _ := http.NewRequest(http.MethodGet, h.proxy+"/content/wknd/en.model.json?x=1", nil)
	req.Header.Set("Authorization", "Bearer stolen-token")
	req.Header.Set("Proxy-Authorization", "Basic c3B5OnNweQ==")
	req.Header.Set("Cookie", "login-token=someone-elses")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must-not-pass")
	req.Header.Set("Accept", "application/json")
	resp, body := h.do(req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s; want 200", resp.StatusCode, body)
	}
	got := h.lastAEMRequest()
	if got.Path != "/content/wknd/en.model.json" || got.RawQuery != "x=1" {
		t.Errorf("AEM got path %q query %q", got.Path, got.RawQuery)
	}
	if want := strings.TrimPrefix(h.aemURL, "http://"); got.Host != want {
		t.Errorf("AEM got Host %q; want the upstream's %q", got.Host, want)
	}
	auth := got.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || h.ims.ValidateAccessToken(token) != nil {
		t.Errorf("AEM got Authorization %q; want a bearer token the IMS issued", auth)
	}
	for _, name := range []string{"Proxy-Authorization", "Cookie", "X-Hop"} {
		if v := got.Header.Values(name); len(v) > 0 {
			t.Errorf("AEM got %s: %q; want it stripped", name, v)
		}
	}
	if v := got.Header.Get("X-Forwarded-Host"); v == "evil.example" {
		t.Errorf("spoofed X-Forwarded-Host reached AEM")
	}
	if v := got.Header.Get("X-Forwarded-For"); strings.Contains(v, "6.6.6.6") || !strings.HasPrefix(v, "127.0.0.1") {
		t.Errorf("X-Forwarded-For: got %q; want only the real client 127.0.0.1", v)
	}
	if got.Header.Get("Accept") != "application/json" {
		t.Errorf("ordinary header Accept did not pass")
	}
	if h.ims.Exchanges() != 1 {
		t.Errorf("IMS exchanges: got %d; want 1", h.ims.Exchanges())
	}
}

func TestReplaysOnceAfter401WithOneNewExchange(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	if resp, _ := h.get("/content/a.json"); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up: got %d", resp.StatusCode)
	}
	before := h.ims.Exchanges()
	h.ims.RevokeAll() // AEM now answers 401 to the cached token

	body := strings.Repeat("x", 1000)
	req, _ := http.NewRequest(http.MethodPost, h.proxy+"/content/a.json", strings.NewReader(body))
	resp, out := h.do(req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after revocation: got %d %s; want 200 after one replay", resp.StatusCode, out)
	}
	if got := h.ims.Exchanges() - before; got != 1 {
		t.Errorf("new exchanges: got %d; want exactly 1", got)
	}
	if got := h.lastAEMRequest().BodyBytes; got != int64(len(body)) {
		t.Errorf("replayed body: AEM got %d bytes; want %d", got, len(body))
	}
}

func TestForbiddenDoesNotRefresh(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	before := h.ims.Exchanges()
	resp, _ := h.get("/aemproxy-sim/status?code=403")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("got %d; want AEM's 403 passed on", resp.StatusCode)
	}
	if got := h.ims.Exchanges() - before; got != 0 {
		t.Errorf("exchanges after a 403: got %d; want 0", got)
	}
}

func TestRedirects(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)

	resp, _ := h.get("/bin/redirect?to=/content/next.html")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("got %d; want 302 passed on, not followed", resp.StatusCode)
	}
	if got, want := resp.Header.Get("Location"), h.proxy+"/content/next.html"; got != want {
		t.Errorf("same-origin Location: got %q; want %q", got, want)
	}

	resp, _ = h.get("/content/dam/wknd/hero.jpg/original")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, h.blob.URL+"/blobs/wknd/hero.jpg") {
		t.Fatalf("blob redirect: got %d Location %q; want 302 to the blob host unchanged", resp.StatusCode, loc)
	}
	// A client following the blob redirect goes straight to the blob host,
	// and the proxy never sent it a token.
	if br, err := http.Get(loc); err == nil {
		br.Body.Close()
	}
	select {
	case hdr := <-h.blobHits:
		if hdr.Get("Authorization") != "" {
			t.Errorf("the blob host received Authorization")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blob host not reached")
	}
}

func TestNotAnOpenProxy(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	addr := strings.TrimPrefix(h.proxy, "http://")
	for _, raw := range []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
	} {
		t.Run(strings.Fields(raw)[0], func(t *testing.T) {
			before := h.aem.Count()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 || resp.StatusCode > 499 {
				t.Errorf("got %d; want a 4xx refusal", resp.StatusCode)
			}
			if h.aem.Count() != before {
				t.Errorf("the request reached AEM")
			}
		})
	}
}

func TestStreamsOneGiBWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 1 GiB")
	}
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	const size = 1 << 30

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := http.Get(fmt.Sprintf("%s/aemproxy-sim/bytes?n=%d", h.proxy, size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: got %d bytes, err %v; want %d", n, err, size)
	}

	// Upload: a body of unknown length streams through and is counted.
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, 64<<10)
		var sent int64
		for sent < size/4 {
			m, err := pw.Write(buf)
			if err != nil {
				return
			}
			sent += int64(m)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPut, h.proxy+"/aemproxy-sim/upload", pr)
	uresp, body := h.do(req)
	if uresp.StatusCode != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"bytes":%d`, size/4)) {
		t.Fatalf("upload: got %d %s; want 200 with %d bytes", uresp.StatusCode, body, size/4)
	}
	runtime.ReadMemStats(&after)
	// The whole process (test, simulated AEM and proxy) must not have
	// buffered the bodies: what it allocated in all stays a small fraction
	// of what passed through, and so does the heap it holds.
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d KiB in all while streaming 1.25 GiB; heap in use %d KiB", allocated>>10, after.HeapInuse>>10)
	if allocated > 64<<20 {
		t.Errorf("allocated %d MiB while streaming 1.25 GiB; want the bodies streamed, not buffered", allocated>>20)
	}
	if after.HeapInuse > before.HeapInuse+32<<20 {
		t.Errorf("heap in use grew from %d to %d MiB", before.HeapInuse>>20, after.HeapInuse>>20)
	}
}

func TestReadinessFollowsTokenState(t *testing.T) {
	h := startHarness(t, harnessOptions{imsDown: true})
	h.waitReady(http.StatusServiceUnavailable)
	resp, body := h.get("/content/a.json")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "token") {
		t.Errorf("request without a token: got %d %s; want 503 saying the token is unavailable", resp.StatusCode, body)
	}
	if h.aem.Count() != 0 {
		t.Errorf("AEM received %d requests while no token was held", h.aem.Count())
	}
	h.ims.SetDown(false)
	h.waitReady(http.StatusOK)
}

func TestDrainsInFlightRequestsOnShutdown(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)

	// An SSE response takes ~1 s; shutdown must let it finish.
	resp, err := http.Get(h.proxy + "/aemproxy-sim/sse?n=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: event 0") {
		t.Fatalf("first event: %q %v", line, err)
	}
	h.stop()
	h.waitLog("shutting down: readiness is now 503, draining in-flight requests")
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("in-flight response cut: %v", err)
	}
	if !strings.Contains(string(rest), "data: event 99") {
		t.Errorf("in-flight response did not finish: last bytes %q", rest[max(0, len(rest)-40):])
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("run: got %v; want nil after a clean shutdown", err)
		}
		h.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the drain")
	}
	if _, err := http.Get(h.proxy + "/content/a.json"); err == nil {
		t.Errorf("proxy still accepts connections after shutdown")
	}
}

func TestNoSecretInLogs(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	h.waitReady(http.StatusOK)
	req, _ := http.NewRequest(http.MethodGet, h.proxy+"/content/a.json?token=query-secret", nil)
	req.Header.Set("Cookie", "login-token=cookie-secret")
	h.do(req)
	h.ims.RevokeAll()
	h.get("/content/b.json")                                        // 401 → replay with a new token
	h.ims.Fail(1, http.StatusUnauthorized, "invalid_client", "", 0) // a failed exchange on the next refresh
	h.ims.RevokeAll()
	h.get("/content/c.json")
	h.stop()
	<-h.done
	h.done <- nil

	logs := h.logs.String()
	secrets := map[string]string{
		"client secret": h.creds.ClientSecret,
		"query value":   "query-secret",
		"cookie value":  "cookie-secret",
	}
	keyPEM, _ := h.creds.PrivateKeyPEM(sim.PKCS1)
	for i, line := range strings.Split(string(keyPEM), "\n") {
		if len(line) > 20 && !strings.HasPrefix(line, "-----") {
			secrets[fmt.Sprintf("private key line %d", i)] = line
		}
	}
	for _, r := range h.aem.Requests() {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			secrets["access token "+tok[len(tok)-8:]] = tok
			// The JWT's signature part alone must not appear either.
			secrets["token signature"] = tok[strings.LastIndex(tok, ".")+1:]
		}
	}
	if len(secrets) < 6 {
		t.Fatalf("test found too few secrets to look for: %d", len(secrets))
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain the %s", what)
		}
	}
	if !strings.Contains(logs, `"message":"request"`) {
		t.Errorf("no access log lines captured; the search proves nothing")
	}
}

func TestConfigErrorsAreReportedTogether(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"aemproxy", "--listen", "nope", "--log-level", "loud"}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil {
		t.Fatal("got nil error; want the configuration problems")
	}
	for _, want := range []string{"listen", "log.level", "routes: none configured"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if exitCode(err) != 1 {
		t.Errorf("exit code: got %d; want 1", exitCode(err))
	}
	err = run(context.Background(), []string{"aemproxy", "--no-such-flag"}, func(string) string { return "" }, io.Discard, &stderr)
	if exitCode(err) != 2 {
		t.Errorf("unknown flag: exit code %d; want 2", exitCode(err))
	}
}

func TestBadCredentialsFileFailsBeforeServing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "creds.json")
	os.WriteFile(path, []byte(`{"integration":{"imsEndpoint":"ims-na1.adobelogin.com","technicalAccount":{"clientId":"x","clientSecret":"very-secret-value"},"privateKey":"garbage"}}`), 0o600)
	err := run(context.Background(), []string{"aemproxy", "--upstream", "https://author-p1-e2.adobeaemcloud.com", "--credentials", path,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("got nil; want a credentials error")
	}
	if !strings.Contains(err.Error(), "integration.privateKey") {
		t.Errorf("error %q does not name integration.privateKey", err)
	}
	if strings.Contains(err.Error(), "very-secret-value") {
		t.Errorf("error reveals the client secret")
	}
}

func TestEnvironmentAndFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "aemproxy.yaml")
	os.WriteFile(cfgPath, []byte("listen: 127.0.0.1:1111\nroutes:\n  - name: author\n    upstream: https://author-p1-e2.adobeaemcloud.com\n"), 0o600)
	env := map[string]string{"AEMPROXY_CONFIG": cfgPath, "AEMPROXY_LISTEN": "127.0.0.1:2222", "AEMPROXY_LOG_LEVEL": "warn"}
	cfg, err := loadConfig([]string{"--log-level", "error"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:2222" {
		t.Errorf("listen: got %q; want the environment's over the file's", cfg.Listen)
	}
	if cfg.Log.Level != "error" {
		t.Errorf("log level: got %q; want the flag's over the environment's", cfg.Log.Level)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].Name != "author" {
		t.Errorf("routes: got %+v", cfg.Routes)
	}
	_, err = loadConfig([]string{"--upstream", "https://x.example"}, func(k string) string {
		if k == "AEMPROXY_CONFIG" {
			return "../../config.example.yaml"
		}
		return ""
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "single route") {
		t.Errorf("--upstream with a two-route config: got %v; want a refusal to guess", err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"aemproxy", "version"}, os.Getenv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "aemproxy ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("got %q; want name, version and Go version", out.String())
	}
}

func TestDemoServesTheWholeFlow(t *testing.T) {
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"aemproxy", "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-format", "json"},
			os.Getenv, &stdout, &stderr)
	}()
	h := &harness{t: t, logs: &stderr, done: done}
	proxy := "http://" + h.waitLog("proxy listening")["addr"].(string)
	resp, err := http.Get(proxy + "/content/wknd/en.model.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Simulated AEM content") {
		t.Errorf("demo request: got %d %s; want 200 from the simulated AEM", resp.StatusCode, body)
	}
	if !strings.Contains(stdout.String(), "curl") {
		t.Errorf("demo did not print a curl line to try: %q", stdout.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("demo returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
}
