package ims

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func mustProvider(t *testing.T, o ProviderOptions) *Provider {
	t.Helper()
	p, err := NewProvider(o)
	if err != nil {
		t.Fatalf("NewProvider() error = %v", err)
	}
	return p
}

func TestProviderDevToken(t *testing.T) {
	clock := newFakeClock()
	tok := devTokenAt(clock.Now().Add(-time.Hour), 24*time.Hour)
	dir := t.TempDir()
	tests := []struct {
		name string
		o    ProviderOptions
	}{
		{"Developer Console JSON", ProviderOptions{Path: writeFile(t, dir, "dev.json", devTokenJSON(t, tok))}},
		{"bare token file", ProviderOptions{Path: writeFile(t, dir, "dev.txt", []byte(tok+"\n"))}},
		{"bare token file, kind stated", ProviderOptions{Path: writeFile(t, dir, "dev2.txt", []byte(tok)), Kind: KindDevToken}},
		{"token given directly", ProviderOptions{Token: Secret(tok)}},
		{"token given directly, kind stated", ProviderOptions{Token: Secret(tok), Kind: KindDevToken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Exchange.Now = clock.Now
			p := mustProvider(t, tt.o)
			if p.Kind() != KindDevToken || p.APIKey() != "" {
				t.Errorf("Kind() = %q, APIKey() = %q; want dev_token and none", p.Kind(), p.APIKey())
			}
			got, err := p.Token(t.Context())
			if err != nil || got.AccessToken != tok || got.Scheme != "" {
				t.Fatalf("Token() = %v, %v; want the token as a bearer token", got, err)
			}
			wantExp := clock.Now().Add(23 * time.Hour).Truncate(time.Millisecond)
			if st := p.State(); !st.Valid || !st.TokenExpiresAt.Equal(wantExp) {
				t.Errorf("State() = valid %v, expires %v; want valid until %v", st.Valid, st.TokenExpiresAt, wantExp)
			}
			if p.Invalidate(tok) {
				t.Error("Invalidate() = true; want false for a development token")
			}
			if once, err := p.Once(t.Context()); err != nil || once.AccessToken != tok {
				t.Errorf("Once() = %v, %v", once, err)
			}
			if err := p.Reload(); err != nil {
				t.Errorf("Reload() of an unchanged source = %v", err)
			}
		})
	}
}

func TestProviderDevTokenExpired(t *testing.T) {
	clock := newFakeClock()
	tok := devTokenAt(clock.Now().Add(-time.Hour), 2*time.Hour)
	path := writeFile(t, t.TempDir(), "dev.json", devTokenJSON(t, tok))
	p := mustProvider(t, ProviderOptions{Path: path, Exchange: ExchangeOptions{Now: clock.Now}, Cache: CacheOptions{Name: "author"}})
	if _, err := p.Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	_, err := p.Token(t.Context())
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Route != "author" {
		t.Fatalf("Token() after expiry = %v; want an *UnavailableError for route author", err)
	}
	exp := clock.Now().Truncate(time.Millisecond).UTC().Format(time.RFC3339)
	for _, want := range []string{"the local development token expired at " + exp, "Integrations → Local token → Get Local Development Token", "save it over " + path, "without a restart"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q; want %q", err, want)
		}
	}
	if p.State().Valid {
		t.Error("State().Valid after expiry")
	}
}

func TestProviderDirectTokenExpiredSaysRestart(t *testing.T) {
	clock := newFakeClock()
	p := mustProvider(t, ProviderOptions{Token: Secret(devTokenAt(clock.Now().Add(-25*time.Hour), 24*time.Hour)), Exchange: ExchangeOptions{Now: clock.Now}})
	_, err := p.Token(t.Context())
	if err == nil || !strings.Contains(err.Error(), "put it in AEMPROXY_TOKEN, then restart aemproxy") {
		t.Errorf("Token() error = %v; want the how-to for the environment variable", err)
	}
}

func TestProviderServiceCredentials(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	data, err := ti.Creds.JSON(sim.JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, t.TempDir(), "service.json", data)
	p := mustProvider(t, ProviderOptions{Path: path, Exchange: ExchangeOptions{BaseURL: ti.URL, Now: clock.Now}})
	if p.Kind() != KindServiceCredentials || p.APIKey() != "" {
		t.Errorf("Kind() = %q, APIKey() = %q; want service_credentials and none", p.Kind(), p.APIKey())
	}
	if ti.IMS.Exchanges() != 0 {
		t.Error("NewProvider contacted IMS")
	}
	if !p.State().CertificateNotAfter.Equal(ti.Creds.Cert.NotAfter) {
		t.Errorf("certificate expiry %v; want %v", p.State().CertificateNotAfter, ti.Creds.Cert.NotAfter)
	}
	tok, err := p.Token(t.Context())
	if err != nil || ti.IMS.ValidateAccessToken(tok.AccessToken) != nil {
		t.Fatalf("Token() = %v, %v; want a token IMS accepts", tok, err)
	}
	if again, _ := p.Token(t.Context()); again.AccessToken != tok.AccessToken || ti.IMS.Exchanges() != 1 {
		t.Errorf("second Token(): new token or %d exchanges; want the cached one and 1", ti.IMS.Exchanges())
	}
	once, err := p.Once(t.Context())
	if err != nil || once.AccessToken == tok.AccessToken || ti.IMS.Exchanges() != 2 {
		t.Errorf("Once() = same token %v, %v, %d exchanges; want a fresh exchange", once.AccessToken == tok.AccessToken, err, ti.IMS.Exchanges())
	}
}

func TestProviderOAuth(t *testing.T) {
	clock := newFakeClock()
	proxy, other := newOAuthClient("Proxy"), newOAuthClient("Other")
	oi := newOAuthIMS(t, sim.IMSOptions{Now: clock.Now}, false, proxy, other)
	dir := t.TempDir()
	tests := []struct {
		name, file, credName string
		data                 []byte
		want                 oauthClient
	}{
		{"workspace, one credential", "ws1.json", "", workspaceJSON(t, "O@AdobeOrg", proxy), proxy},
		{"workspace, chosen by name", "ws2.json", "Other", workspaceJSON(t, "O@AdobeOrg", proxy, other), other},
		{"plain", "plain.json", "", plainOAuthJSON(t, proxy), proxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := oi.exchange()
			o.Now = clock.Now
			p := mustProvider(t, ProviderOptions{Path: writeFile(t, dir, tt.file, tt.data), OAuthCredentialName: tt.credName, Exchange: o})
			if p.Kind() != KindOAuth || p.APIKey() != tt.want.id {
				t.Errorf("Kind() = %q, APIKey() = %q; want oauth_server_to_server and %q", p.Kind(), p.APIKey(), tt.want.id)
			}
			tok, err := p.Token(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			info, err := oi.IMS.Introspect(tok.AccessToken)
			if err != nil || info.ClientID != tt.want.id {
				t.Errorf("token of client %q (%v); want %q", info.ClientID, err, tt.want.id)
			}
			if !tok.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) || !p.State().Valid {
				t.Errorf("token expires %v, state valid %v; want 24 h and valid", tok.ExpiresAt, p.State().Valid)
			}
		})
	}
}

func TestProviderBasic(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		o    ProviderOptions
		want string
	}{
		{"file", ProviderOptions{Path: writeFile(t, dir, "sdk.json", []byte(`{"username":"admin","password":"s3cret-sdk-pw"}`))}, basicValue("admin", "s3cret-sdk-pw")},
		{"file, kind stated", ProviderOptions{Path: writeFile(t, dir, "sdk2.json", []byte(`{"username":"admin","password":"admin"}`)), Kind: KindBasic}, "YWRtaW46YWRtaW4="},
		{"given directly", ProviderOptions{Basic: &BasicCredentials{Username: "admin", Password: "admin"}}, "YWRtaW46YWRtaW4="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustProvider(t, tt.o)
			tok, err := p.Token(t.Context())
			if err != nil || tok.Scheme != "Basic" || tok.AccessToken != tt.want || !tok.ExpiresAt.Equal(farFuture) {
				t.Fatalf("Token() = scheme %q, value ok %v, expiry %v, %v; want Basic %s", tok.Scheme, tok.AccessToken == tt.want, tok.ExpiresAt, err, tt.want)
			}
			if s := fmt.Sprintf("%v %+v", p, p); strings.Contains(s, tok.AccessToken) || !strings.Contains(s, "kind=basic") {
				t.Errorf("printed provider %q; want its kind and no secret", s)
			}
			if p.Kind() != KindBasic || p.Invalidate(tok.AccessToken) || !p.State().Valid || p.APIKey() != "" {
				t.Errorf("Kind %q, Invalidate true or State invalid or API key %q", p.Kind(), p.APIKey())
			}
		})
	}
}

func TestNewProviderProblems(t *testing.T) {
	dir := t.TempDir()
	c, err := sim.NewCredentials(sim.CredentialOptions{Bits: 1024})
	if err != nil {
		t.Fatal(err)
	}
	service, _ := c.JSON(sim.JSONOptions{})
	servicePath := writeFile(t, dir, "service.json", service)
	unknownPath := writeFile(t, dir, "unknown.json", []byte(`{"apiKey":"s3cr3t-unknown-12345"}`))
	brokenPath := writeFile(t, dir, "broken.json", []byte(`{"integration":{"technicalAccount":{"clientSecret":"s3cr3t-broken-12345"}}}`))
	bigPath := writeFile(t, dir, "big.json", make([]byte, maxCredentialsBytes+1))
	devPath := writeFile(t, dir, "dev.txt", []byte(devTokenAt(time.Now(), time.Hour)))
	missing := filepath.Join(dir, "missing.json")
	tests := []struct {
		name string
		o    ProviderOptions
		want []string
	}{
		{"nothing", ProviderOptions{}, []string{"no credentials"}},
		{"file and token", ProviderOptions{Path: devPath, Token: "x"}, []string{"only one of"}},
		{"unknown kind", ProviderOptions{Path: devPath, Kind: "jwt"}, []string{`unknown credentials kind "jwt"`}},
		{"token with another kind", ProviderOptions{Token: Secret(devTokenAt(time.Now(), time.Hour)), Kind: KindOAuth}, []string{"kind oauth_server_to_server was configured, but a development token was given"}},
		{"basic with another kind", ProviderOptions{Basic: &BasicCredentials{Username: "a", Password: "b"}, Kind: KindDevToken}, []string{"but basic credentials were given"}},
		{"bad basic", ProviderOptions{Basic: &BasicCredentials{Username: "a:b"}}, []string{"basic username: contains a colon", "basic password: empty"}},
		{"bad token", ProviderOptions{Token: "two words"}, []string{"local development token from AEMPROXY_TOKEN: holds more than one word"}},
		{"missing file", ProviderOptions{Path: missing}, []string{"credentials file " + missing + ": read credentials file: open " + missing}},
		{"big file", ProviderOptions{Path: bigPath}, []string{"credentials file " + bigPath + ": larger than 1 MiB"}},
		{"unknown file", ProviderOptions{Path: unknownPath}, []string{"credentials file " + unknownPath + ": not a kind of credentials aemproxy knows", "dev_token ("}},
		{"explicit kind mismatch", ProviderOptions{Path: servicePath, Kind: KindOAuth},
			[]string{"credentials file " + servicePath + ": kind oauth_server_to_server was configured, but the file has no client_id (it looks like service_credentials)"}},
		{"explicit dev token, JSON file", ProviderOptions{Path: servicePath, Kind: KindDevToken}, []string{"kind dev_token was configured, but the file has no accessToken"}},
		{"explicit basic", ProviderOptions{Path: servicePath, Kind: KindBasic}, []string{"kind basic was configured, but the file has no username and password"}},
		{"explicit basic, incomplete", ProviderOptions{Path: writeFile(t, dir, "user.json", []byte(`{"username":"admin"}`)), Kind: KindBasic}, []string{"password: missing"}},
		{"explicit OAuth, project without one", ProviderOptions{Path: writeFile(t, dir, "ws.json", workspaceJSON(t, "O")), Kind: KindOAuth},
			[]string{"kind oauth_server_to_server was configured, but the file has no credential with integration_type oauth_server_to_server in its project"}},
		{"explicit service credentials", ProviderOptions{Path: devPath, Kind: KindServiceCredentials}, []string{"but the file has no integration object (it looks like dev_token)"}},
		{"bad options, good file", ProviderOptions{Path: servicePath, Exchange: ExchangeOptions{JWTLifetime: time.Second, BaseURL: &url.URL{Scheme: "ftp", Host: "x"}}},
			[]string{"JWT lifetime 1s", `IMS URL "ftp://x"`}},
		{"every problem at once", ProviderOptions{Path: brokenPath, ReloadDebounce: -1, Exchange: ExchangeOptions{JWTLifetime: time.Second}},
			[]string{"reload debounce -1ns", "JWT lifetime 1s", "credentials file " + brokenPath + ": integration.privateKey: missing", "credentials file " + brokenPath + ": integration.org: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProvider(tt.o)
			if err == nil {
				t.Fatalf("NewProvider() = %v; want an error", p)
			}
			for _, w := range tt.want {
				if n := strings.Count(err.Error(), w); n != 1 {
					t.Errorf("error %q has %q %d times; want once", err, w, n)
				}
			}
			if tt.o.Kind == "jwt" && strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("error %q; want only the unknown kind", err)
			}
			secretsOf{"s3cr3t-unknown-12345", "s3cr3t-broken-12345", c.ClientSecret}.check(t, "error", err.Error())
		})
	}
}

func TestProviderPermissionWarning(t *testing.T) {
	dir := t.TempDir()
	// A group that is not ours, to see group access warned about; only
	// root can hand a file to it.
	foreign := -1
	if os.Getuid() == 0 {
		foreign = 54321
	}
	for _, tt := range []struct {
		mode os.FileMode
		gid  int // -1: the process's own group
		warn bool
	}{
		{0o600, -1, false},
		{0o400, -1, false},
		{0o640, -1, false}, // our own group, as a Kubernetes secret volume with fsGroup
		{0o440, -1, false},
		{0o644, -1, true},
		{0o602, -1, true},
		{0o640, foreign, foreign >= 0},
	} {
		path := filepath.Join(dir, "basic.json")
		os.Remove(path)
		if err := os.WriteFile(path, []byte(`{"username":"admin","password":"admin"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		if tt.gid >= 0 {
			if err := os.Chown(path, -1, tt.gid); err != nil {
				t.Fatal(err)
			}
		}
		var logs logSink
		mustProvider(t, ProviderOptions{Path: path, Logger: logs.Logger()})
		lines := logs.Lines("chmod 600 " + path)
		if got := len(lines) == 1; got != tt.warn {
			t.Errorf("mode %#o: warned %v; want %v; logs:\n%s", tt.mode, got, tt.warn, logs.String())
		}
		if tt.warn && (lines[0]["level"] != "warn" || lines[0]["file"] != path) {
			t.Errorf("mode %#o: warning %v; want level warn naming the file", tt.mode, lines[0])
		}
	}
}

func TestProviderReloadDevToken(t *testing.T) {
	clock := newFakeClock()
	var logs logSink
	got := make(reloads, 10)
	tok1 := devTokenAt(clock.Now().Add(-time.Hour), 24*time.Hour)
	tok2 := devTokenAt(clock.Now(), 24*time.Hour)
	path := writeFile(t, t.TempDir(), "dev.json", devTokenJSON(t, tok1))
	p := mustProvider(t, ProviderOptions{Path: path, Exchange: ExchangeOptions{Now: clock.Now}, Logger: logs.Logger(), OnReload: got.hook})

	// Unchanged content: nothing happens.
	if err := p.Reload(); err != nil || len(got) != 0 {
		t.Fatalf("Reload() of unchanged file = %v with %d reloads; want nothing", err, len(got))
	}
	replaceFile(t, path, []byte(tok2))
	if err := p.Reload(); err != nil {
		t.Fatalf("Reload() = %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("OnReload(%v); want nil", err)
	}
	if tok, _ := p.Token(t.Context()); tok.AccessToken != tok2 {
		t.Error("new token not used after Reload")
	}
	if n := len(logs.Lines("credentials file reloaded")); n != 1 {
		t.Errorf("%d reload lines; want 1", n)
	}
}

func TestProviderReloadRefusesBadFile(t *testing.T) {
	clock := newFakeClock()
	tok := devTokenAt(clock.Now().Add(-time.Hour), 24*time.Hour)
	expired := devTokenAt(clock.Now().Add(-48*time.Hour), 24*time.Hour)
	tests := []struct {
		name string
		kind Kind
		data []byte // nil: remove the file
		want string
	}{
		{"missing", "", nil, "read credentials file: open "},
		{"not JSON", "", []byte(`{"accessToken": "` + tok), "not valid JSON"},
		{"unknown kind", "", []byte(`{"hello":"s3cr3t-hello-12345"}`), "not a kind of credentials aemproxy knows"},
		{"incomplete service credentials", "", []byte(`{"integration":{"technicalAccount":{"clientSecret":"s3cr3t-hello-12345"}}}`), "integration.privateKey: missing"},
		{"empty", "", []byte{}, "empty file"},
		{"expired token", "", []byte(expired), "the local development token in it expired at"},
		{"other kind than configured", KindDevToken, []byte(`{"username":"a","password":"s3cr3t-hello-12345"}`), "kind dev_token was configured, but the file has no accessToken (it looks like basic)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logSink
			got := make(reloads, 10)
			path := writeFile(t, t.TempDir(), "dev.json", devTokenJSON(t, tok))
			p := mustProvider(t, ProviderOptions{Path: path, Kind: tt.kind, Exchange: ExchangeOptions{Now: clock.Now}, Logger: logs.Logger(), OnReload: got.hook})
			if tt.data == nil {
				must(t, os.Remove(path))
			} else {
				replaceFile(t, path, tt.data)
			}
			for i := range 3 {
				err := p.Reload()
				if err == nil || !strings.HasPrefix(err.Error(), "credentials file "+path+": ") || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Reload() #%d = %v; want an error naming the file and %q", i+1, err, tt.want)
				}
			}
			if tok2, err := p.Token(t.Context()); err != nil || tok2.AccessToken != tok {
				t.Errorf("Token() = %v; want the old token kept", err)
			}
			// Logged and reported once, however often the same file is read.
			lines := logs.Lines("keeping the current credentials")
			if len(lines) != 1 || len(got) != 1 {
				t.Fatalf("%d warnings, %d OnReload calls; want 1 each; logs:\n%s", len(lines), len(got), logs.String())
			}
			if lines[0]["level"] != "warn" || lines[0]["file"] != path || !strings.Contains(lines[0]["error"].(string), tt.want) {
				t.Errorf("warning %v; want level warn with the file and the problem", lines[0])
			}
			secretsOf{"s3cr3t-hello-12345", expired}.check(t, "logs", logs.String())
			// Fixing the file clears the refusal.
			replaceFile(t, path, devTokenJSON(t, tok))
			if err := p.Reload(); err != nil {
				t.Errorf("Reload() of the original content = %v", err)
			}
		})
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// gatedHandler holds requests while a gate is set.
type gatedHandler struct {
	h    http.Handler
	mu   sync.Mutex
	gate chan struct{}
}

func (g *gatedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			http.Error(w, "gave up", http.StatusServiceUnavailable)
			return
		}
	}
	g.h.ServeHTTP(w, r)
}

func (g *gatedHandler) hold() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
	return g.gate
}

func TestProviderReloadServiceCredentialsExchangesAgain(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	gated := &gatedHandler{h: ti.IMS}
	creds2, _ := newCreds(t, sim.CredentialOptions{Bits: 1024, Now: clock.Now, NotAfter: clock.Now().Add(100 * 24 * time.Hour)})
	ti.IMS.Register(creds2)
	data1, _ := ti.Creds.JSON(sim.JSONOptions{})
	data2, _ := creds2.JSON(sim.JSONOptions{KeyFormat: sim.PKCS8, NoStatus: true})
	path := writeFile(t, t.TempDir(), "service.json", data1)
	fetched := make(fetchWaiter, 10)
	p := mustProvider(t, ProviderOptions{
		Path:     path,
		Exchange: ExchangeOptions{BaseURL: mustParseURL(t, "http://ims.test"), Client: &http.Client{Transport: handlerTransport{gated}}, Now: clock.Now},
		// A caller waiting on the held exchange would be a bug: fail fast.
		Cache: CacheOptions{OnFetch: fetched.hook, FetchTimeout: 5 * time.Second},
	})
	tok1, err := p.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fetched.wait(t)

	release := gated.hold()
	replaceFile(t, path, data2)
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	// The new credential's exchange is held at IMS: the current token is
	// still served, and the state already describes the new credential.
	if tok, err := p.Token(t.Context()); err != nil || tok.AccessToken != tok1.AccessToken {
		t.Errorf("Token() during the exchange = %v; want the current token", err)
	}
	if !p.State().CertificateNotAfter.Equal(creds2.Cert.NotAfter) {
		t.Errorf("certificate expiry %v; want the new credential's %v", p.State().CertificateNotAfter, creds2.Cert.NotAfter)
	}
	close(release)
	if err := fetched.wait(t); err != nil {
		t.Fatal(err)
	}
	tok2, err := p.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := ti.IMS.Introspect(tok2.AccessToken)
	if err != nil || info.ClientID != creds2.ClientID {
		t.Errorf("token after reload is of client %q (%v); want %q", info.ClientID, err, creds2.ClientID)
	}
}

func TestProviderReloadChangesKind(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	oc := newOAuthClient("Proxy")
	ti.IMS.RegisterOAuth(oc.id, oc.secret, oc.scopes)
	service, _ := ti.Creds.JSON(sim.JSONOptions{})
	devTok := devTokenAt(clock.Now(), time.Hour)
	path := writeFile(t, t.TempDir(), "creds.json", devTokenJSON(t, devTok))
	fetched := make(fetchWaiter, 100)
	p := mustProvider(t, ProviderOptions{Path: path, Exchange: ExchangeOptions{BaseURL: ti.URL, Now: clock.Now}, Cache: CacheOptions{OnFetch: fetched.hook}})

	steps := []struct {
		data    []byte
		kind    Kind
		apiKey  string
		checkFn func(t *testing.T, tok Token)
	}{
		{service, KindServiceCredentials, "", func(t *testing.T, tok Token) {
			if info, err := ti.IMS.Introspect(tok.AccessToken); err != nil || info.ClientID != ti.Creds.ClientID {
				t.Errorf("token of %q, %v; want the service credentials' client", info.ClientID, err)
			}
		}},
		{workspaceJSON(t, "O", oc), KindOAuth, oc.id, func(t *testing.T, tok Token) {
			if info, err := ti.IMS.Introspect(tok.AccessToken); err != nil || info.ClientID != oc.id {
				t.Errorf("token of %q, %v; want the OAuth client", info.ClientID, err)
			}
		}},
		{[]byte(`{"username":"admin","password":"admin"}`), KindBasic, "", func(t *testing.T, tok Token) {
			if tok.Scheme != "Basic" {
				t.Errorf("scheme %q; want Basic", tok.Scheme)
			}
		}},
		{[]byte(devTok), KindDevToken, "", func(t *testing.T, tok Token) {
			if tok.AccessToken != devTok {
				t.Error("not the development token")
			}
		}},
		{service, KindServiceCredentials, "", func(t *testing.T, tok Token) {
			if ti.IMS.ValidateAccessToken(tok.AccessToken) != nil {
				t.Error("not a valid IMS token")
			}
		}},
	}
	prev := KindDevToken
	for i, st := range steps {
		for len(fetched) > 0 {
			<-fetched
		}
		replaceFile(t, path, st.data)
		if err := p.Reload(); err != nil {
			t.Fatalf("step %d: Reload() = %v", i, err)
		}
		if p.Kind() != st.kind || p.APIKey() != st.apiKey {
			t.Fatalf("step %d: Kind() = %q, APIKey() = %q; want %q, %q", i, p.Kind(), p.APIKey(), st.kind, st.apiKey)
		}
		if prev == KindServiceCredentials && st.kind == KindOAuth {
			// One exchanged credential replaces another: the token in hand
			// is served until the new exchange, started by Reload, is done.
			if err := fetched.wait(t); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := p.Token(t.Context())
		if err != nil {
			t.Fatalf("step %d: Token() = %v", i, err)
		}
		st.checkFn(t, tok)
		prev = st.kind
	}
}

func TestProviderHotPathDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	service, _ := ti.Creds.JSON(sim.JSONOptions{})
	dir := t.TempDir()
	for name, o := range map[string]ProviderOptions{
		"service credentials": {Path: writeFile(t, dir, "s.json", service), Exchange: ExchangeOptions{BaseURL: ti.URL, Now: clock.Now}},
		"dev token":           {Token: Secret(devTokenAt(clock.Now(), time.Hour)), Exchange: ExchangeOptions{Now: clock.Now}},
		"basic":               {Basic: &BasicCredentials{Username: "admin", Password: "admin"}},
	} {
		p := mustProvider(t, o)
		ctx := t.Context()
		if _, err := p.Token(ctx); err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(1000, func() { _, _ = p.Token(ctx) }); allocs != 0 {
			t.Errorf("%s: Token() allocates %v times; want 0", name, allocs)
		}
	}
}

func BenchmarkProviderToken(b *testing.B) {
	p, err := NewProvider(ProviderOptions{Token: Secret(devTokenAt(time.Now(), time.Hour))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
