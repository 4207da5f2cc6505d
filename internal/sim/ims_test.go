package sim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

type imsFixture struct {
	clock *testClock
	creds *Credentials
	ims   *IMS
	logs  *lockedBuffer
}

func newIMSFixture(t *testing.T) *imsFixture {
	t.Helper()
	f := &imsFixture{clock: &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, logs: &lockedBuffer{}}
	var err error
	if f.creds, err = NewCredentials(CredentialOptions{Now: f.clock.Now}); err != nil {
		t.Fatal(err)
	}
	if f.ims, err = NewIMS(IMSOptions{Now: f.clock.Now, Logger: zerolog.New(f.logs)}); err != nil {
		t.Fatal(err)
	}
	f.ims.Register(f.creds)
	return f
}

// claims returns the claim set the service credentials call for.
func (f *imsFixture) claims() map[string]any {
	c := f.creds
	return map[string]any{
		"iss": c.Org,
		"sub": c.TechnicalAccountID,
		"aud": "https://" + c.IMSEndpoint + "/c/" + c.ClientID,
		"exp": f.clock.Now().Add(5 * time.Minute).Unix(),
		"https://" + c.IMSEndpoint + "/s/" + DefaultMetascope: true,
	}
}

func (f *imsFixture) form(claims map[string]any) url.Values {
	return url.Values{
		"client_id":     {f.creds.ClientID},
		"client_secret": {f.creds.ClientSecret},
		"jwt_token":     {signRS256(f.creds.Key, map[string]any{"alg": "RS256", "typ": "JWT"}, claims)},
	}
}

func post(h http.Handler, path, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func postForm(h http.Handler, path string, form url.Values) *httptest.ResponseRecorder {
	return post(h, path, "application/x-www-form-urlencoded", []byte(form.Encode()))
}

type answer struct {
	TokenType   string          `json:"token_type"`
	AccessToken string          `json:"access_token"`
	ExpiresIn   json.Number     `json:"expires_in"`
	Error       string          `json:"error"`
	Description string          `json:"error_description"`
	Raw         json.RawMessage `json:"-"`
}

func decodeAnswer(t *testing.T, rec *httptest.ResponseRecorder) answer {
	t.Helper()
	var a answer
	dec := json.NewDecoder(rec.Body)
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("response is not JSON: %v", err)
	}
	return a
}

func TestIMSExchangeSuccess(t *testing.T) {
	f := newIMSFixture(t)
	rec := postForm(f.ims, "/ims/exchange/jwt", f.form(f.claims()))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	a := decodeAnswer(t, rec)
	if a.TokenType != "bearer" || a.ExpiresIn != "86399999" {
		t.Errorf("token_type %q expires_in %q; want bearer and 86399999 (ms)", a.TokenType, a.ExpiresIn)
	}
	_, payload, err := verifyRS256(a.AccessToken, f.ims.PublicKey())
	if err != nil {
		t.Fatalf("access token does not verify: %v", err)
	}
	wantCreated := strconv.FormatInt(f.clock.Now().UnixMilli(), 10)
	if payload["created_at"] != wantCreated || payload["expires_in"] != "86400000" || payload["type"] != "access_token" ||
		payload["client_id"] != f.creds.ClientID || payload["user_id"] != f.creds.TechnicalAccountID || payload["as"] != "ims-na1" || payload["id"] == "" {
		t.Errorf("access token payload %v", payload)
	}

	info, err := f.ims.Introspect(a.AccessToken)
	if err != nil || info.ClientID != f.creds.ClientID || !info.ExpiresAt.Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Errorf("Introspect = %+v, %v", info, err)
	}
	if f.ims.Exchanges() != 1 || f.ims.Issued() != 1 {
		t.Errorf("Exchanges %d Issued %d; want 1 and 1", f.ims.Exchanges(), f.ims.Issued())
	}

	// Trailing slash and multipart are accepted too.
	if rec := postForm(f.ims, "/ims/exchange/jwt/", f.form(f.claims())); rec.Code != 200 {
		t.Errorf("trailing slash: status %d", rec.Code)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range f.form(f.claims()) {
		mw.WriteField(k, v[0])
	}
	mw.Close()
	if rec := post(f.ims, "/ims/exchange/jwt", mw.FormDataContentType(), body.Bytes()); rec.Code != 200 {
		t.Errorf("multipart: status %d: %s", rec.Code, rec.Body)
	}
}

func TestIMSValidateAccessToken(t *testing.T) {
	f := newIMSFixture(t)
	issue := func() string {
		return decodeAnswer(t, postForm(f.ims, "/ims/exchange/jwt", f.form(f.claims()))).AccessToken
	}
	a, b, c := issue(), issue(), issue()
	for _, tok := range []string{a, b, c} {
		if err := f.ims.ValidateAccessToken(tok); err != nil {
			t.Fatalf("fresh token: %v", err)
		}
	}
	if !f.ims.Revoke(a) || f.ims.Revoke("nope") {
		t.Error("Revoke: want true for an issued token, false otherwise")
	}
	tampered := b[:len(b)-4] + "AAAA"
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"revoked", a, ErrTokenRevoked},
		{"unknown", "nope", ErrUnknownToken},
		{"tampered", tampered, ErrUnknownToken},
	}
	for _, tt := range tests {
		if err := f.ims.ValidateAccessToken(tt.token); !errors.Is(err, tt.want) {
			t.Errorf("%s: ValidateAccessToken = %v; want %v", tt.name, err, tt.want)
		}
	}
	f.ims.RevokeAll()
	if err := f.ims.ValidateAccessToken(b); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("after RevokeAll: %v; want ErrTokenRevoked", err)
	}
	d := issue()
	f.clock.Advance(24 * time.Hour)
	if err := f.ims.ValidateAccessToken(d); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("after 24h: %v; want ErrTokenExpired", err)
	}
}

func TestIMSExchangeChecks(t *testing.T) {
	f := newIMSFixture(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "https://" + f.creds.IMSEndpoint
	withClaims := func(edit func(c map[string]any)) func(url.Values) {
		return func(form url.Values) {
			c := f.claims()
			edit(c)
			form.Set("jwt_token", signRS256(f.creds.Key, map[string]any{"alg": "RS256", "typ": "JWT"}, c))
		}
	}
	tests := []struct {
		name   string
		edit   func(form url.Values)
		status int
		code   string
		desc   string
	}{
		{"ok", func(url.Values) {}, 200, "", ""},
		{"unknown client", func(v url.Values) { v.Set("client_id", "x") }, 400, "invalid_client", "Unknown client_id."},
		{"wrong secret", func(v url.Values) { v.Set("client_secret", "x") }, 401, "invalid_client", ""},
		{"no jwt", func(v url.Values) { v.Del("jwt_token") }, 400, "invalid_token", "Missing jwt_token."},
		{"garbage jwt", func(v url.Values) { v.Set("jwt_token", "a.b.c") }, 400, "invalid_token", "JWT could not be decoded."},
		{"alg HS256", func(v url.Values) {
			v.Set("jwt_token", signRS256(f.creds.Key, map[string]any{"alg": "HS256"}, f.claims()))
		}, 400, "invalid_signature", "JWT alg must be RS256."},
		{"typ", func(v url.Values) {
			v.Set("jwt_token", signRS256(f.creds.Key, map[string]any{"alg": "RS256", "typ": "JWS"}, f.claims()))
		}, 400, "invalid_token", "JWT typ must be JWT."},
		{"other key", func(v url.Values) {
			v.Set("jwt_token", signRS256(other, map[string]any{"alg": "RS256", "typ": "JWT"}, f.claims()))
		}, 400, "invalid_signature", "JWT signature does not match the integration's certificate."},
		{"signature not base64", func(v url.Values) { v.Set("jwt_token", v.Get("jwt_token")+"!") }, 400, "invalid_signature", ""},
		{"exp missing", withClaims(func(c map[string]any) { delete(c, "exp") }), 400, "invalid_token", "JWT exp must be an integer number of seconds."},
		{"exp string", withClaims(func(c map[string]any) { c["exp"] = "1" }), 400, "invalid_token", ""},
		{"exp fraction", withClaims(func(c map[string]any) { c["exp"] = 1.5e9 + 0.5 }), 400, "invalid_token", ""},
		{"exp expired", withClaims(func(c map[string]any) { c["exp"] = f.clock.Now().Add(-31 * time.Second).Unix() }), 400, "invalid_token", "JWT expired."},
		{"exp within skew", withClaims(func(c map[string]any) { c["exp"] = f.clock.Now().Add(-29 * time.Second).Unix() }), 200, "", ""},
		{"aud of the network address", withClaims(func(c map[string]any) { c["aud"] = "https://127.0.0.1:8080/c/" + f.creds.ClientID }), 400, "invalid_client", "JWT aud does not match client_id."},
		{"aud array", withClaims(func(c map[string]any) { c["aud"] = []string{endpoint + "/c/" + f.creds.ClientID} }), 400, "invalid_client", ""},
		{"sub is the email", withClaims(func(c map[string]any) { c["sub"] = f.creds.Email }), 400, "bad_request", ""},
		{"iss wrong", withClaims(func(c map[string]any) { c["iss"] = "X@AdobeOrg" }), 400, "bad_request", ""},
		{"unbound scope", withClaims(func(c map[string]any) { c[endpoint+"/s/ent_other"] = true }), 400, "invalid_scope", "The metascopes in the JWT are not a subset of the metascopes in the binding."},
		{"scope of another IMS", withClaims(func(c map[string]any) {
			delete(c, endpoint+"/s/"+DefaultMetascope)
			c["https://ims-eu1.adobelogin.com/s/"+DefaultMetascope] = true
		}), 400, "invalid_scope", ""},
		{"scope false", withClaims(func(c map[string]any) { c[endpoint+"/s/"+DefaultMetascope] = false }), 400, "invalid_scope", ""},
		{"no scopes", withClaims(func(c map[string]any) { delete(c, endpoint+"/s/"+DefaultMetascope) }), 400, "invalid_scope", ""},
		{"iat is fine", withClaims(func(c map[string]any) { c["iat"] = f.clock.Now().Unix() }), 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := f.form(f.claims())
			tt.edit(form)
			rec := postForm(f.ims, "/ims/exchange/jwt", form)
			if rec.Code != tt.status {
				t.Fatalf("status %d; want %d: %s", rec.Code, tt.status, rec.Body)
			}
			a := decodeAnswer(t, rec)
			if a.Error != tt.code || (tt.desc != "" && a.Description != tt.desc) {
				t.Errorf("error %q %q; want %q %q", a.Error, a.Description, tt.code, tt.desc)
			}
		})
	}
}

func TestIMSRequestShape(t *testing.T) {
	f := newIMSFixture(t)
	form := f.form(f.claims())
	tests := []struct {
		name   string
		method string
		path   string
		ctype  string
		status int
		code   string
	}{
		{"GET", http.MethodGet, "/ims/exchange/jwt", "", 405, "method_not_allowed"},
		{"JSON body", http.MethodPost, "/ims/exchange/jwt", "application/json", 400, "invalid_request"},
		{"no content type", http.MethodPost, "/ims/exchange/jwt", "", 400, "invalid_request"},
		{"broken multipart", http.MethodPost, "/ims/exchange/jwt", "multipart/form-data; boundary=x", 400, "invalid_request"},
		{"other path", http.MethodPost, "/ims/token/v2", "application/x-www-form-urlencoded", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(form.Encode()))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			f.ims.ServeHTTP(rec, req)
			if rec.Code != tt.status || decodeAnswer(t, rec).Error != tt.code {
				t.Errorf("status %d body %s; want %d %s", rec.Code, rec.Body, tt.status, tt.code)
			}
		})
	}
}

func TestIMSFaults(t *testing.T) {
	f := newIMSFixture(t)
	form := f.form(f.claims())
	f.ims.Fail(2, 429, "too_many_requests", "slow down", 1500*time.Millisecond)
	f.ims.Fail(1, 502, "", "", 0)
	f.ims.Fail(0, 500, "ignored", "", 0)
	for i := range 2 {
		rec := postForm(f.ims, "/ims/exchange/jwt", form)
		if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" || decodeAnswer(t, rec).Error != "too_many_requests" {
			t.Errorf("call %d: status %d Retry-After %q; want 429 and 2", i, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
	if rec := postForm(f.ims, "/ims/exchange/jwt", form); rec.Code != 502 || strings.Contains(rec.Body.String(), "{") {
		t.Errorf("third call: status %d body %q; want 502 without JSON", rec.Code, rec.Body)
	}
	if rec := postForm(f.ims, "/ims/exchange/jwt", form); rec.Code != 200 {
		t.Errorf("fourth call: status %d; want 200", rec.Code)
	}
	f.ims.SetDown(true)
	if rec := postForm(f.ims, "/ims/exchange/jwt", form); rec.Code != 503 {
		t.Errorf("down: status %d; want 503", rec.Code)
	}
	f.ims.SetDown(false)
	if got := f.ims.Exchanges(); got != 5 {
		t.Errorf("Exchanges = %d; want 5", got)
	}
}

func TestIMSClientCredentials(t *testing.T) {
	f := newIMSFixture(t)
	f.ims.RegisterOAuth("oauth-client", "oauth-secret", []string{"openid", "AdobeID", "aem.folders"})
	f.ims.SetTokenLifetime(time.Hour)
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {"oauth-client"}, "client_secret": {"oauth-secret"}, "scope": {"openid, AdobeID"}}
	rec := postForm(f.ims, "/ims/token/v3", good)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	a := decodeAnswer(t, rec)
	if a.ExpiresIn != "3599" || a.TokenType != "bearer" {
		t.Errorf("expires_in %q token_type %q; want 3599 (seconds) and bearer", a.ExpiresIn, a.TokenType)
	}
	info, err := f.ims.Introspect(a.AccessToken)
	if err != nil || strings.Join(info.Scopes, ",") != "openid,AdobeID" {
		t.Errorf("Introspect = %+v, %v", info, err)
	}

	tests := []struct {
		name   string
		edit   func(url.Values)
		status int
		code   string
	}{
		{"grant", func(v url.Values) { v.Set("grant_type", "password") }, 400, "unsupported_grant_type"},
		{"unknown client", func(v url.Values) { v.Set("client_id", "x") }, 400, "invalid_client"},
		{"secret", func(v url.Values) { v.Set("client_secret", "x") }, 401, "invalid_client"},
		{"scope not allowed", func(v url.Values) { v.Set("scope", "openid,admin") }, 400, "invalid_scope"},
		{"no scope", func(v url.Values) { v.Del("scope") }, 400, "invalid_scope"},
	}
	for _, tt := range tests {
		form := url.Values{}
		for k, v := range good {
			form[k] = v
		}
		tt.edit(form)
		rec := postForm(f.ims, "/ims/token/v3/", form)
		if rec.Code != tt.status || decodeAnswer(t, rec).Error != tt.code {
			t.Errorf("%s: status %d body %s; want %d %s", tt.name, rec.Code, rec.Body, tt.status, tt.code)
		}
	}
	if f.ims.OAuthRequests() != 6 {
		t.Errorf("OAuthRequests = %d; want 6", f.ims.OAuthRequests())
	}
}

func TestIMSOpaqueTokens(t *testing.T) {
	clock := &testClock{t: time.Now()}
	creds, err := NewCredentials(CredentialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ims, err := NewIMS(IMSOptions{Now: clock.Now, OpaqueTokens: true, TokenLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ims.Register(creds)
	f := &imsFixture{clock: clock, creds: creds, ims: ims}
	a := decodeAnswer(t, postForm(ims, "/ims/exchange/jwt", f.form(f.claims())))
	if strings.Count(a.AccessToken, ".") != 0 || a.ExpiresIn != "59999" {
		t.Errorf("token %q expires_in %q; want an opaque token and 59999", a.AccessToken, a.ExpiresIn)
	}
	if err := ims.ValidateAccessToken(a.AccessToken); err != nil {
		t.Error(err)
	}
	if _, err := NewIMS(IMSOptions{TokenLifetime: -time.Second}); err == nil {
		t.Error("NewIMS with a negative lifetime: no error")
	}
}

func TestIMSNeverEchoesSecrets(t *testing.T) {
	f := newIMSFixture(t)
	var outputs []string
	var tokens []string
	for _, edit := range []func(url.Values){
		func(url.Values) {},
		func(v url.Values) { v.Set("client_secret", v.Get("client_secret")+"x") },
		func(v url.Values) { v.Set("jwt_token", v.Get("jwt_token")[:20]) },
	} {
		form := f.form(f.claims())
		edit(form)
		rec := postForm(f.ims, "/ims/exchange/jwt", form)
		a := decodeAnswer(t, rec)
		if a.AccessToken != "" {
			tokens = append(tokens, a.AccessToken)
			a.AccessToken = ""
		}
		raw, _ := json.Marshal(a)
		outputs = append(outputs, string(raw), form.Get("jwt_token"))
	}
	logs := f.logs.String()
	if strings.Count(logs, "\n") != 3 {
		t.Errorf("want one log line per request:\n%s", logs)
	}
	for _, secret := range append([]string{f.creds.ClientSecret, base64.RawURLEncoding.EncodeToString(f.creds.Key.D.Bytes())[:20]}, tokens...) {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret:\n%s", logs)
		}
		for _, o := range outputs[:1] {
			if strings.Contains(o, secret) {
				t.Errorf("response contains a secret: %s", o)
			}
		}
	}
	for i := 1; i < len(outputs); i += 2 {
		if strings.Contains(logs, outputs[i]) {
			t.Error("logs contain a JWT")
		}
	}
}
