package ims

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aemproxy/aemproxy/internal/sim"
)

func TestJWTExchangeAgainstSimulatedIMS(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	x := ti.exchange(t, clock.Now)

	tok, err := x.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := ti.IMS.ValidateAccessToken(tok.AccessToken); err != nil {
		t.Errorf("the simulated IMS rejects the token it issued: %v", err)
	}
	// Expiry comes from the token's created_at + expires_in (24 h), not from
	// the response's expires_in (24 h - 1 ms).
	if !tok.IssuedAt.Equal(clock.Now()) || !tok.ExpiresAt.Equal(clock.Now().Add(24*time.Hour)) {
		t.Errorf("token issued %v, expires %v; want %v and 24h later", tok.IssuedAt, tok.ExpiresAt, clock.Now())
	}
	if got := ti.IMS.Exchanges(); got != 1 {
		t.Errorf("IMS saw %d exchanges; want 1", got)
	}
	if !x.CertificateNotAfter().Equal(ti.Creds.Cert.NotAfter) {
		t.Errorf("CertificateNotAfter() = %v; want %v", x.CertificateNotAfter(), ti.Creds.Cert.NotAfter)
	}

	reqs := ti.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d requests; want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/ims/exchange/jwt" {
		t.Errorf("path = %q; want /ims/exchange/jwt", r.Path)
	}
	if r.ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q; want application/x-www-form-urlencoded", r.ContentType)
	}
	if keys := slices.Sorted(maps.Keys(r.Form)); !slices.Equal(keys, []string{"client_id", "client_secret", "jwt_token"}) {
		t.Errorf("form fields = %q; want client_id, client_secret, jwt_token", keys)
	}
	if r.Form.Get("client_id") != ti.Creds.ClientID || r.Form.Get("client_secret") != ti.Creds.ClientSecret {
		t.Error("client_id or client_secret differ from the credentials")
	}
	// The request went to 127.0.0.1, but the audience is still the
	// credentials' IMS (spec §3).
	_, claims := verifyJWT(t, r.Form.Get("jwt_token"), ti.Creds.Cert)
	want := map[string]any{
		"iss": ti.Creds.Org,
		"sub": ti.Creds.TechnicalAccountID,
		"aud": "https://ims-na1.adobelogin.com/c/" + ti.Creds.ClientID,
		"exp": claims["exp"],
		"https://ims-na1.adobelogin.com/s/ent_aem_cloud_api": true,
	}
	if !maps.Equal(claims, want) {
		t.Errorf("claims = %v; want exactly %v", claims, want)
	}
	if exp := fmt.Sprint(clock.Now().Add(DefaultJWTLifetime).Unix()); fmt.Sprint(claims["exp"]) != exp {
		t.Errorf("exp = %v; want %s", claims["exp"], exp)
	}
}

func TestJWTExchangeOpaqueTokenUsesMilliseconds(t *testing.T) {
	clock := newFakeClock()
	creds, sc := newCreds(t, sim.CredentialOptions{})
	ims, err := sim.NewIMS(sim.IMSOptions{Now: clock.Now, OpaqueTokens: true, TokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ims.Register(creds)
	srv := httptest.NewServer(ims)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	x, err := NewJWTExchange(sc, ExchangeOptions{BaseURL: base, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := x.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The sim answers expires_in = 3599999 (ms).
	if want := clock.Now().Add(time.Hour - time.Millisecond); !tok.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v; want %v (expires_in read as milliseconds)", tok.ExpiresAt, want)
	}
	if err := ims.ValidateAccessToken(tok.AccessToken); err != nil {
		t.Errorf("ValidateAccessToken: %v", err)
	}
}

func TestJWTExchangeIMSErrors(t *testing.T) {
	clock := newFakeClock()
	ti := newTestIMS(t, clock.Now)
	_, otherSC := newCreds(t, sim.CredentialOptions{})
	otherCert := otherSC.Certificate
	base := sim.Integration{
		IMSEndpoint: ti.Creds.IMSEndpoint, ClientID: ti.Creds.ClientID, ClientSecret: ti.Creds.ClientSecret,
		Org: ti.Creds.Org, TechnicalAccountID: ti.Creds.TechnicalAccountID, Metascopes: ti.Creds.Metascopes,
		Certificate: ti.Creds.Cert,
	}

	tests := []struct {
		name       string
		setup      func(in *sim.Integration, c *ServiceCredentials, o *ExchangeOptions)
		status     int
		code       string
		permanent  bool
		retryAfter time.Duration
		wantText   string
	}{
		{
			name: "wrong secret",
			setup: func(_ *sim.Integration, c *ServiceCredentials, _ *ExchangeOptions) {
				c.ClientSecret = "wrong-secret-value"
			},
			status:    401,
			code:      "invalid_client",
			permanent: true,
			wantText:  "ims: 401 invalid_client: Invalid client_id and client_secret pair. (check technicalAccount.clientId and clientSecret",
		},
		{
			name: "unknown client",
			setup: func(_ *sim.Integration, c *ServiceCredentials, _ *ExchangeOptions) {
				c.ClientID = "cm-p1-e2-integration"
			},
			status:    400,
			code:      "invalid_client",
			permanent: true,
			wantText:  "ims: 400 invalid_client: Unknown client_id. (IMS does not know this client",
		},
		{
			name:      "certificate not registered",
			setup:     func(in *sim.Integration, _ *ServiceCredentials, _ *ExchangeOptions) { in.Certificate = otherCert },
			status:    400,
			code:      "invalid_signature",
			permanent: true,
			wantText:  "ims: 400 invalid_signature: JWT signature does not match the integration's certificate. (IMS could not verify the JWT",
		},
		{
			name: "metascope not bound",
			setup: func(in *sim.Integration, _ *ServiceCredentials, _ *ExchangeOptions) {
				in.Metascopes = []string{"ent_other"}
			},
			status:    400,
			code:      "invalid_scope",
			permanent: true,
			wantText:  "ims: 400 invalid_scope: The metascopes in the JWT are not a subset of the metascopes in the binding. (the metascopes",
		},
		{
			name: "clock an hour slow",
			setup: func(_ *sim.Integration, _ *ServiceCredentials, o *ExchangeOptions) {
				o.Now = func() time.Time { return clock.Now().Add(-time.Hour) }
			},
			status:    400,
			code:      "invalid_token",
			permanent: true,
			wantText:  "ims: 400 invalid_token: JWT expired. (IMS rejected the JWT as expired or malformed: check this machine's clock)",
		},
		{
			name:      "org mismatch",
			setup:     func(in *sim.Integration, _ *ServiceCredentials, _ *ExchangeOptions) { in.Org = "OTHER@AdobeOrg" },
			status:    400,
			code:      "bad_request",
			permanent: true,
			wantText:  "ims: 400 bad_request: JWT iss or sub does not match the integration. (check org and id",
		},
		{
			name: "throttled",
			setup: func(*sim.Integration, *ServiceCredentials, *ExchangeOptions) {
				ti.IMS.Fail(1, 429, "too_many_requests", "Slow down.", 30*time.Second)
			},
			status:     429,
			code:       "too_many_requests",
			retryAfter: 30 * time.Second,
			wantText:   "ims: 429 too_many_requests: Slow down. (retry after 30s) (IMS is throttling this client)",
		},
		{
			name: "internal error",
			setup: func(*sim.Integration, *ServiceCredentials, *ExchangeOptions) {
				ti.IMS.Fail(1, 500, "internal_error", "Please try again later", 0)
			},
			status:   500,
			code:     "internal_error",
			wantText: "ims: 500 internal_error: Please try again later",
		},
		{
			name:     "down",
			setup:    func(*sim.Integration, *ServiceCredentials, *ExchangeOptions) { ti.IMS.SetDown(true) },
			status:   503,
			code:     "server_error",
			wantText: "ims: 503 server_error: IMS is unavailable (simulated outage).",
		},
		{
			name: "gateway without JSON",
			setup: func(*sim.Integration, *ServiceCredentials, *ExchangeOptions) {
				ti.IMS.Fail(1, 502, "", "", 0)
			},
			status:   502,
			wantText: "ims: 502 Bad Gateway",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, sc := base, *ti.SC
			o := ExchangeOptions{BaseURL: ti.URL, Now: clock.Now}
			tt.setup(&in, &sc, &o)
			ti.IMS.RegisterIntegration(in)
			defer ti.IMS.SetDown(false)
			x, err := NewJWTExchange(&sc, o)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := x.Token(t.Context())
			if err == nil {
				t.Fatalf("Token() = %v; want an error", tok)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T; want *ims.Error", err, err)
			}
			if e.StatusCode != tt.status || e.Code != tt.code || e.RetryAfter != tt.retryAfter {
				t.Errorf("got status %d code %q retry after %v; want %d %q %v", e.StatusCode, e.Code, e.RetryAfter, tt.status, tt.code, tt.retryAfter)
			}
			if got := IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v; want %v", got, tt.permanent)
			}
			if !strings.HasPrefix(err.Error(), tt.wantText) {
				t.Errorf("error = %q; want prefix %q", err, tt.wantText)
			}
			reqs := ti.Requests()
			assertNoSecret(t, err.Error(), ti.Creds.ClientSecret, nil)
			if jwt := reqs[len(reqs)-1].Form.Get("jwt_token"); jwt != "" && strings.Contains(err.Error(), jwt) {
				t.Error("error contains the JWT")
			}
		})
	}
}

func TestRequestTokenTransportFailures(t *testing.T) {
	clock := newFakeClock()
	_, sc := newCreds(t, sim.CredentialOptions{})
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		closed    bool
		want      string
		malformed bool
		permanent bool
	}{
		{
			name:   "connection refused",
			closed: true,
			want:   "request IMS token: Post \"http://127.0.0.1:",
		},
		{
			name:      "200 not JSON",
			handler:   func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "<html>hello</html>") },
			want:      "read IMS response from http://127.0.0.1:",
			malformed: true,
		},
		{
			name: "body over 1 MiB",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Write([]byte(`{"access_token":"`))
				w.Write(make([]byte, maxResponseBytes))
			},
			want:      "larger than 1048576 bytes",
			malformed: true,
		},
		{
			name: "redirect not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://elsewhere.example/ims/exchange/jwt", http.StatusFound)
			},
			want:      "ims: 302 Found (IMS answered with a redirect: check the IMS URL)",
			permanent: true,
		},
		{
			name:      "not found",
			handler:   http.NotFound,
			want:      "ims: 404 Not Found (no token endpoint at this address: check the IMS URL)",
			permanent: true,
		},
		{
			name: "secret echoed back",
			handler: func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				w.WriteHeader(400)
				fmt.Fprintf(w, `{"error":"invalid_request","error_description":"bad %s and %s"}`, r.PostForm.Get("client_secret"), r.PostForm.Get("jwt_token"))
			},
			want:      "ims: 400 invalid_request: bad [REDACTED] and [REDACTED]",
			permanent: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			if tt.closed {
				srv.Close()
			} else {
				defer srv.Close()
			}
			base, _ := url.Parse(srv.URL)
			x, err := NewJWTExchange(sc, ExchangeOptions{BaseURL: base, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, err = x.Token(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Token() error = %v; want it to contain %q", err, tt.want)
			}
			if got := errors.Is(err, ErrMalformedResponse); got != tt.malformed {
				t.Errorf("errors.Is(err, ErrMalformedResponse) = %v; want %v", got, tt.malformed)
			}
			if got := IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent = %v; want %v", got, tt.permanent)
			}
			assertNoSecret(t, err.Error(), sc.ClientSecret.Reveal(), nil)
		})
	}
}

func TestJWTExchangeHonoursContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	_, sc := newCreds(t, sim.CredentialOptions{})
	base, _ := url.Parse(srv.URL)
	x, err := NewJWTExchange(sc, ExchangeOptions{BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := x.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token(cancelled ctx) error = %v; want context.Canceled", err)
	}
}

func TestNewJWTExchangeOptions(t *testing.T) {
	_, sc := newCreds(t, sim.CredentialOptions{})
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name     string
		creds    *ServiceCredentials
		o        ExchangeOptions
		endpoint string
		want     string
	}{
		{name: "defaults", creds: sc, endpoint: "https://ims-na1.adobelogin.com/ims/exchange/jwt"},
		{name: "base with path", creds: sc, o: ExchangeOptions{BaseURL: mustURL("http://127.0.0.1:9/gw/")}, endpoint: "http://127.0.0.1:9/gw/ims/exchange/jwt"},
		{name: "nil credentials", want: "new JWT exchange: service credentials: no service credentials"},
		{name: "lifetime too long", creds: sc, o: ExchangeOptions{JWTLifetime: 25 * time.Hour}, want: "new JWT exchange: JWT lifetime 25h0m0s: must be between 10s and 24h0m0s"},
		{name: "lifetime too short", creds: sc, o: ExchangeOptions{JWTLifetime: time.Second}, want: "new JWT exchange: JWT lifetime 1s"},
		{name: "negative lifetime", creds: sc, o: ExchangeOptions{JWTLifetime: -time.Minute}, want: "new JWT exchange: JWT lifetime -1m0s"},
		{name: "base ftp", creds: sc, o: ExchangeOptions{BaseURL: mustURL("ftp://x")}, want: `new JWT exchange: IMS URL "ftp://x": scheme must be https or http`},
		{name: "base without host", creds: sc, o: ExchangeOptions{BaseURL: mustURL("https:///x")}, want: "no host"},
		{name: "base with user", creds: sc, o: ExchangeOptions{BaseURL: mustURL("https://u:p@x")}, want: `IMS URL "https://u:xxxxx@x": must not contain user info`},
		{name: "base with query", creds: sc, o: ExchangeOptions{BaseURL: mustURL("https://x/?a=b")}, want: "must not have a query or fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := NewJWTExchange(tt.creds, tt.o)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("NewJWTExchange error = %v; want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if x.endpoint != tt.endpoint {
				t.Errorf("endpoint = %q; want %q", x.endpoint, tt.endpoint)
			}
			if x.client == nil || x.now == nil || x.lifetime != DefaultJWTLifetime {
				t.Errorf("defaults not applied: client=%v now=%v lifetime=%v", x.client, x.now != nil, x.lifetime)
			}
		})
	}
}

// fakeAccessToken builds an unsigned token whose payload is payload.
func fakeAccessToken(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestDecodeTokenResponse(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	createdMs := now.Add(-time.Hour).UnixMilli()
	jwtLike := fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"86400000","type":"access_token"}`, createdMs))
	jwtNumbers := fakeAccessToken(fmt.Sprintf(`{"created_at":%d,"expires_in":86400000}`, createdMs))
	jwtExpired := fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"1000"}`, createdMs))
	jwtZero := fakeAccessToken(fmt.Sprintf(`{"created_at":"%d","expires_in":"0"}`, createdMs))
	jwtNoTimes := fakeAccessToken(`{"type":"access_token"}`)

	tests := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		unit    time.Duration
		issued  time.Time
		expires time.Time
		wantErr string
	}{
		{
			name: "ms expires_in", status: 200, unit: time.Millisecond,
			body:   `{"token_type":"bearer","access_token":"opaque","expires_in":86399999}`,
			issued: now, expires: now.Add(24*time.Hour - time.Millisecond),
		},
		{
			name: "seconds expires_in", status: 200, unit: time.Second,
			body:   `{"token_type":"bearer","access_token":"opaque","expires_in":86399}`,
			issued: now, expires: now.Add(86399 * time.Second),
		},
		{
			name: "expires_in as string", status: 200, unit: time.Millisecond,
			body:   `{"access_token":"opaque","expires_in":"60000"}`,
			issued: now, expires: now.Add(time.Minute),
		},
		{
			name: "expires_in as float", status: 200, unit: time.Millisecond,
			body:   `{"access_token":"opaque","expires_in":6.0e4}`,
			issued: now, expires: now.Add(time.Minute),
		},
		{
			name: "created_at wins over expires_in", status: 200, unit: time.Second,
			body:   `{"token_type":"bearer","access_token":"` + jwtLike + `","expires_in":86399999}`,
			issued: now.Add(-time.Hour), expires: now.Add(23 * time.Hour),
		},
		{
			name: "created_at as number", status: 200, unit: time.Millisecond,
			body:   `{"access_token":"` + jwtNumbers + `","expires_in":1}`,
			issued: now.Add(-time.Hour), expires: now.Add(23 * time.Hour),
		},
		{
			name: "JWT without times falls back to expires_in", status: 200, unit: time.Millisecond,
			body:   `{"access_token":"` + jwtNoTimes + `","expires_in":1000}`,
			issued: now, expires: now.Add(time.Second),
		},
		{name: "no access_token", status: 200, unit: time.Millisecond, body: `{"token_type":"bearer","expires_in":1000}`, wantErr: "malformed IMS response: 200 response has no access_token"},
		{name: "not JSON", status: 200, unit: time.Millisecond, body: `<html>`, wantErr: "malformed IMS response: 200 response is not a JSON token object"},
		{name: "token type mac", status: 200, unit: time.Millisecond, body: `{"access_token":"x","token_type":"mac","expires_in":1000}`, wantErr: `token_type is "mac", want bearer`},
		{name: "no expires_in", status: 200, unit: time.Millisecond, body: `{"access_token":"x"}`, wantErr: "expires_in: missing"},
		{name: "expires_in zero", status: 200, unit: time.Millisecond, body: `{"access_token":"x","expires_in":0}`, wantErr: "expires_in is 0 ms"},
		{name: "expires_in negative", status: 200, unit: time.Second, body: `{"access_token":"x","expires_in":-5}`, wantErr: "expires_in is -5 1s"},
		{name: "expires_in absurd", status: 200, unit: time.Second, body: `{"access_token":"x","expires_in":86399999000}`, wantErr: "expires_in is 86399999000 1s"},
		{name: "expires_in text", status: 200, unit: time.Second, body: `{"access_token":"x","expires_in":"soon"}`, wantErr: `expires_in: "soon" is not an integer`},
		{name: "expires_in bool", status: 200, unit: time.Second, body: `{"access_token":"x","expires_in":true}`, wantErr: `expires_in: "true" is not an integer`},
		{name: "already expired by created_at", status: 200, unit: time.Millisecond, body: `{"access_token":"` + jwtExpired + `","expires_in":86399999}`, wantErr: "IMS returned a token that expired at 2026-03-01T11:00:01Z (now 2026-03-01T12:00:00Z): check this machine's clock"},
		{name: "zero lifetime claim", status: 200, unit: time.Millisecond, body: `{"access_token":"` + jwtZero + `","expires_in":86399999}`, wantErr: "access token's expires_in claim is 0 ms"},
		{
			name: "error with retry-after", status: 429, header: http.Header{"Retry-After": {"12"}},
			body: `{"error":"too_many_requests","error_description":"slow\r\ndown\u001b[31m"}`, wantErr: "ims: 429 too_many_requests: slow down [31m (retry after 12s) (IMS is throttling this client)",
		},
		{name: "error without body", status: 500, body: ``, wantErr: "ims: 500 Internal Server Error"},
		{name: "error with HTML", status: 503, body: `<h1>down</h1>`, wantErr: "ims: 503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := decodeTokenResponse(tt.status, tt.header, []byte(tt.body), tt.unit, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v; want it to contain %q", err, tt.wantErr)
				}
				if !tok.IsZero() {
					t.Errorf("token = %v with an error; want none", tok)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tok.IssuedAt.Equal(tt.issued) || !tok.ExpiresAt.Equal(tt.expires) {
				t.Errorf("issued %v expires %v; want %v and %v", tok.IssuedAt, tok.ExpiresAt, tt.issued, tt.expires)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"120", 2 * time.Minute},
		{"999999999999", time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
