package sim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Errors from IMS.ValidateAccessToken.
var (
	ErrUnknownToken = errors.New("sim ims: access token was not issued by this IMS")
	ErrTokenExpired = errors.New("sim ims: access token expired")
	ErrTokenRevoked = errors.New("sim ims: access token revoked")
)

const (
	imsJWTPath   = "/ims/exchange/jwt"
	imsOAuthPath = "/ims/token/v3"
	// imsClockSkew is what IMS tolerates on the JWT's exp (spec §3).
	imsClockSkew = 30 * time.Second
	// imsMaxForm bounds a request body; a real form is about 2 KiB.
	imsMaxForm = 64 << 10
	// imsScopeMismatch is IMS's message for invalid_scope (spec §3).
	imsScopeMismatch = "The metascopes in the JWT are not a subset of the metascopes in the binding."
)

// IMSOptions configure NewIMS.
type IMSOptions struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TokenLifetime of issued access tokens; 0 means 24 h, as IMS issues.
	TokenLifetime time.Duration
	// Logger gets one line per request; the zero value discards them.
	Logger zerolog.Logger
	// OpaqueTokens makes the IMS issue random strings instead of JWTs, so a
	// client can only learn the expiry from expires_in.
	OpaqueTokens bool
	// KeyBits is the size of the key access tokens are signed with; 0 means
	// 2048.
	KeyBits int
}

// Integration is one technical account bound at the simulated IMS: the
// client, its secret, the certificate JWTs must verify against and the
// metascopes of its binding.
type Integration struct {
	IMSEndpoint        string
	ClientID           string
	ClientSecret       string
	Org                string
	TechnicalAccountID string
	Metascopes         []string
	Certificate        *x509.Certificate
}

// TokenInfo describes an access token the simulated IMS issued.
type TokenInfo struct {
	ID        string
	ClientID  string
	UserID    string
	Scopes    []string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// IMS simulates Adobe IMS's token endpoints (spec §3, §4) as an
// http.Handler:
//
//	POST /ims/exchange/jwt  JWT exchange for service credentials; expires_in in ms
//	POST /ims/token/v3      OAuth client credentials; expires_in in seconds
//
// Both accept a trailing slash and urlencoded or multipart forms. The JWT
// exchange checks the method, content type, client id and secret, the RS256
// signature against the registered certificate, exp (with 30 s of skew), aud,
// iss, sub and the scope claims, and answers with the error of the spec's
// table at the first problem. Issued access tokens are RS256 JWTs whose
// payload carries created_at and expires_in in ms as strings. Neither
// responses nor logs contain secrets, JWTs or tokens. Safe for concurrent use.
type IMS struct {
	now    func() time.Time
	log    zerolog.Logger
	key    *rsa.PrivateKey
	opaque bool

	mu            sync.Mutex
	lifetime      time.Duration
	integrations  map[string]Integration
	oauthClients  map[string]imsOAuthClient
	faults        []imsFault
	down          bool
	exchanges     int
	oauthRequests int
	issued        int
	tokens        map[string]*imsIssued
}

type imsOAuthClient struct {
	secret string
	scopes []string
}

type imsFault struct {
	remaining   int
	status      int
	code        string
	description string
	retryAfter  time.Duration
}

type imsIssued struct {
	info    TokenInfo
	revoked bool
}

// imsRefusal is an error answer.
type imsRefusal struct {
	status      int
	code        string
	description string
	retryAfter  time.Duration
}

func refuse(status int, code, description string) *imsRefusal {
	return &imsRefusal{status: status, code: code, description: description}
}

// NewIMS returns a simulated IMS with its own signing key and no
// integrations.
func NewIMS(o IMSOptions) (*IMS, error) {
	bits := o.KeyBits
	if bits == 0 {
		bits = 2048
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("new simulated IMS: signing key: %w", err)
	}
	if o.TokenLifetime < 0 {
		return nil, fmt.Errorf("new simulated IMS: negative token lifetime %v", o.TokenLifetime)
	}
	s := &IMS{
		now:          o.Now,
		log:          o.Logger,
		key:          key,
		opaque:       o.OpaqueTokens,
		lifetime:     o.TokenLifetime,
		integrations: make(map[string]Integration),
		oauthClients: make(map[string]imsOAuthClient),
		tokens:       make(map[string]*imsIssued),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.lifetime == 0 {
		s.lifetime = 24 * time.Hour
	}
	return s, nil
}

// Register binds c's technical account with all of c's metascopes.
func (s *IMS) Register(c *Credentials) {
	s.RegisterIntegration(Integration{
		IMSEndpoint:        c.IMSEndpoint,
		ClientID:           c.ClientID,
		ClientSecret:       c.ClientSecret,
		Org:                c.Org,
		TechnicalAccountID: c.TechnicalAccountID,
		Metascopes:         c.Metascopes,
		Certificate:        c.Cert,
	})
}

// RegisterIntegration binds in, replacing any integration with its client
// id. An empty IMSEndpoint means DefaultIMSEndpoint.
func (s *IMS) RegisterIntegration(in Integration) {
	in.Metascopes = append([]string(nil), in.Metascopes...)
	if in.IMSEndpoint == "" {
		in.IMSEndpoint = DefaultIMSEndpoint
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.integrations[in.ClientID] = in
}

// RegisterOAuth adds an OAuth server-to-server client allowed the scopes.
func (s *IMS) RegisterOAuth(clientID, secret string, scopes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthClients[clientID] = imsOAuthClient{secret: secret, scopes: append([]string(nil), scopes...)}
}

// SetTokenLifetime changes the lifetime of tokens issued from now on.
func (s *IMS) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > 0 {
		s.lifetime = d
	}
}

// Fail makes the next n requests to either endpoint fail with status and, if
// code is not empty, the JSON error body {"error": code, "error_description":
// description}; a positive retryAfter adds a Retry-After header (whole
// seconds, rounded up). Calls queue up: the next n after those already
// queued.
func (s *IMS) Fail(n int, status int, code, description string, retryAfter time.Duration) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, imsFault{remaining: n, status: status, code: code, description: description, retryAfter: retryAfter})
}

// SetDown makes every request answer 503 until SetDown(false).
func (s *IMS) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Exchanges counts POST requests to /ims/exchange/jwt, successful or not.
func (s *IMS) Exchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// OAuthRequests counts POST requests to /ims/token/v3, successful or not.
func (s *IMS) OAuthRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oauthRequests
}

// Issued counts access tokens issued by both endpoints.
func (s *IMS) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// PublicKey returns the key that verifies the access tokens s issues.
func (s *IMS) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// ValidateAccessToken returns nil if token is an access token s issued that
// is neither expired at s's clock nor revoked. It fits AEM.Validate.
func (s *IMS) ValidateAccessToken(token string) error {
	_, err := s.Introspect(token)
	return err
}

// Introspect describes token if s issued it and it is still valid: its
// signature verifies, it is not expired at s's clock and not revoked.
func (s *IMS) Introspect(token string) (TokenInfo, error) {
	s.mu.Lock()
	it, ok := s.tokens[token]
	var info TokenInfo
	revoked := false
	if ok {
		info, revoked = it.info, it.revoked
	}
	s.mu.Unlock()
	if !ok {
		return TokenInfo{}, ErrUnknownToken
	}
	if !s.opaque {
		if _, _, err := verifyRS256(token, &s.key.PublicKey); err != nil {
			return TokenInfo{}, fmt.Errorf("%w: %v", ErrUnknownToken, err)
		}
	}
	if revoked {
		return TokenInfo{}, ErrTokenRevoked
	}
	if !s.now().Before(info.ExpiresAt) {
		return TokenInfo{}, ErrTokenExpired
	}
	return info, nil
}

// Revoke revokes token and reports whether s had issued it.
func (s *IMS) Revoke(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.tokens[token]
	if ok {
		it.revoked = true
	}
	return ok
}

// RevokeAll revokes every token issued so far.
func (s *IMS) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range s.tokens {
		it.revoked = true
	}
}

// ServeHTTP implements the IMS endpoints.
func (s *IMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path != imsJWTPath && path != imsOAuthPath {
		s.answer(w, r, "", refuse(http.StatusNotFound, "not_found", "No IMS endpoint at this path."), nil)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.answer(w, r, "", refuse(http.StatusMethodNotAllowed, "method_not_allowed", "Use POST."), nil)
		return
	}

	s.mu.Lock()
	if path == imsJWTPath {
		s.exchanges++
	} else {
		s.oauthRequests++
	}
	down := s.down
	var fault *imsFault
	if !down && len(s.faults) > 0 {
		f := s.faults[0]
		fault = &f
		if s.faults[0].remaining--; s.faults[0].remaining == 0 {
			s.faults = s.faults[1:]
		}
	}
	s.mu.Unlock()

	switch {
	case down:
		s.answer(w, r, "", &imsRefusal{status: http.StatusServiceUnavailable, code: "server_error", description: "IMS is unavailable (simulated outage)."}, nil)
		return
	case fault != nil:
		s.answer(w, r, "", &imsRefusal{status: fault.status, code: fault.code, description: fault.description, retryAfter: fault.retryAfter}, nil)
		return
	}

	form, refusal := readIMSForm(w, r)
	if refusal != nil {
		s.answer(w, r, form.Get("client_id"), refusal, nil)
		return
	}
	var body map[string]any
	if path == imsJWTPath {
		body, refusal = s.exchangeJWT(form)
	} else {
		body, refusal = s.clientCredentials(form)
	}
	s.answer(w, r, form.Get("client_id"), refusal, body)
}

// readIMSForm reads an urlencoded or multipart form body.
func readIMSForm(w http.ResponseWriter, r *http.Request) (url.Values, *imsRefusal) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mediaType = ""
	}
	r.Body = http.MaxBytesReader(w, r.Body, imsMaxForm)
	switch mediaType {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return url.Values{}, refuse(http.StatusBadRequest, "invalid_request", "The request body is not a valid form.")
		}
		return r.PostForm, nil
	case "multipart/form-data":
		if err := r.ParseMultipartForm(imsMaxForm); err != nil {
			return url.Values{}, refuse(http.StatusBadRequest, "invalid_request", "The request body is not a valid multipart form.")
		}
		return url.Values(r.MultipartForm.Value), nil
	}
	return url.Values{}, refuse(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded or multipart/form-data.")
}

func (s *IMS) answer(w http.ResponseWriter, r *http.Request, clientID string, refusal *imsRefusal, body map[string]any) {
	status := http.StatusOK
	code := ""
	if refusal != nil {
		status, code = refusal.status, refusal.code
		if refusal.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64((refusal.retryAfter+time.Second-1)/time.Second), 10))
		}
		if code != "" {
			body = map[string]any{"error": code, "error_description": refusal.description}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if body != nil {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintln(w, http.StatusText(status))
	}
	s.log.Info().Str("method", r.Method).Str("path", r.URL.Path).Str("client_id", clientID).
		Int("status", status).Str("ims_error", code).Msg("simulated IMS request")
}

// exchangeJWT checks a JWT exchange request in the order of spec §3's table.
func (s *IMS) exchangeJWT(form url.Values) (map[string]any, *imsRefusal) {
	clientID := form.Get("client_id")
	s.mu.Lock()
	in, known := s.integrations[clientID]
	lifetime := s.lifetime
	s.mu.Unlock()
	if clientID == "" || !known {
		return nil, refuse(http.StatusBadRequest, "invalid_client", "Unknown client_id.")
	}
	if !secretEqual(form.Get("client_secret"), in.ClientSecret) {
		return nil, refuse(http.StatusUnauthorized, "invalid_client", "Invalid client_id and client_secret pair.")
	}
	assertion := form.Get("jwt_token")
	if assertion == "" {
		return nil, refuse(http.StatusBadRequest, "invalid_token", "Missing jwt_token.")
	}
	var pub *rsa.PublicKey
	if in.Certificate != nil {
		pub, _ = in.Certificate.PublicKey.(*rsa.PublicKey)
	}
	if pub == nil {
		return nil, refuse(http.StatusBadRequest, "invalid_signature", "No certificate is registered for this integration.")
	}
	claims, refusal := checkJWT(assertion, pub)
	if refusal != nil {
		return nil, refusal
	}

	expNumber, _ := claims["exp"].(json.Number)
	exp, err := expNumber.Int64()
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid_token", "JWT exp must be an integer number of seconds.")
	}
	now := s.now()
	if now.After(time.Unix(exp, 0).Add(imsClockSkew)) {
		return nil, refuse(http.StatusBadRequest, "invalid_token", "JWT expired.")
	}
	if aud, _ := claims["aud"].(string); aud != "https://"+in.IMSEndpoint+"/c/"+in.ClientID {
		return nil, refuse(http.StatusBadRequest, "invalid_client", "JWT aud does not match client_id.")
	}
	iss, _ := claims["iss"].(string)
	sub, _ := claims["sub"].(string)
	if iss != in.Org || sub != in.TechnicalAccountID {
		return nil, refuse(http.StatusBadRequest, "bad_request", "JWT iss or sub does not match the integration.")
	}
	scopes, refusal := jwtScopes(claims, in)
	if refusal != nil {
		return nil, refusal
	}

	token, info := s.issue(in.ClientID, in.TechnicalAccountID, scopes, in.IMSEndpoint, lifetime)
	ms := info.ExpiresAt.Sub(info.CreatedAt).Milliseconds()
	// Real IMS reports one millisecond less than the token's own expires_in.
	return map[string]any{"token_type": "bearer", "access_token": token, "expires_in": max(ms-1, 1)}, nil
}

// jwtScopes returns the metascopes claimed by claims, refusing any that the
// binding lacks or that name another IMS.
func jwtScopes(claims map[string]any, in Integration) ([]string, *imsRefusal) {
	prefix := "https://" + in.IMSEndpoint + "/s/"
	var scopes []string
	for k, v := range claims {
		name, ours := strings.CutPrefix(k, prefix)
		if !ours {
			if strings.HasPrefix(k, "https://") && strings.Contains(k, "/s/") {
				return nil, refuse(http.StatusBadRequest, "invalid_scope", imsScopeMismatch)
			}
			continue
		}
		if v != true {
			return nil, refuse(http.StatusBadRequest, "invalid_scope", "Metascope claims must be true.")
		}
		if !slices.Contains(in.Metascopes, name) {
			return nil, refuse(http.StatusBadRequest, "invalid_scope", imsScopeMismatch)
		}
		scopes = append(scopes, name)
	}
	if len(scopes) == 0 {
		return nil, refuse(http.StatusBadRequest, "invalid_scope", "The JWT claims no metascopes.")
	}
	return scopes, nil
}

// clientCredentials serves the OAuth server-to-server grant (spec §4).
func (s *IMS) clientCredentials(form url.Values) (map[string]any, *imsRefusal) {
	if form.Get("grant_type") != "client_credentials" {
		return nil, refuse(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials.")
	}
	clientID := form.Get("client_id")
	s.mu.Lock()
	client, known := s.oauthClients[clientID]
	lifetime := s.lifetime
	s.mu.Unlock()
	if clientID == "" || !known {
		return nil, refuse(http.StatusBadRequest, "invalid_client", "Unknown client_id.")
	}
	if !secretEqual(form.Get("client_secret"), client.secret) {
		return nil, refuse(http.StatusUnauthorized, "invalid_client", "Invalid client_id and client_secret pair.")
	}
	var scopes []string
	for _, sc := range strings.Split(form.Get("scope"), ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			if !slices.Contains(client.scopes, sc) {
				return nil, refuse(http.StatusBadRequest, "invalid_scope", "Invalid scope: "+sanitizeScope(sc)+".")
			}
			scopes = append(scopes, sc)
		}
	}
	if len(scopes) == 0 {
		return nil, refuse(http.StatusBadRequest, "invalid_scope", "scope is required.")
	}
	token, info := s.issue(clientID, clientID+"@techacct.adobe.com", scopes, DefaultIMSEndpoint, lifetime)
	secs := int64(info.ExpiresAt.Sub(info.CreatedAt) / time.Second)
	return map[string]any{"access_token": token, "token_type": "bearer", "expires_in": max(secs-1, 1)}, nil
}

func sanitizeScope(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// issue mints and records an access token.
func (s *IMS) issue(clientID, userID string, scopes []string, endpoint string, lifetime time.Duration) (string, TokenInfo) {
	now := s.now()
	info := TokenInfo{
		ID:        credHex(12),
		ClientID:  clientID,
		UserID:    userID,
		Scopes:    scopes,
		CreatedAt: now.Truncate(time.Millisecond),
	}
	info.ExpiresAt = info.CreatedAt.Add(lifetime)
	var token string
	if s.opaque {
		token = "sim-at-" + credHex(24)
	} else {
		as, _, _ := strings.Cut(endpoint, ".")
		token = signRS256(s.key, map[string]any{"alg": "RS256", "typ": "JWT", "kid": as + "-key-at-1", "x5u": as + "-key-at-1.cer"}, map[string]any{
			"id":         info.ID,
			"type":       "access_token",
			"client_id":  clientID,
			"user_id":    userID,
			"as":         as,
			"aa_id":      userID,
			"created_at": strconv.FormatInt(info.CreatedAt.UnixMilli(), 10),
			"expires_in": strconv.FormatInt(lifetime.Milliseconds(), 10),
			"scope":      strings.Join(scopes, ","),
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, it := range s.tokens {
		if !now.Before(it.info.ExpiresAt) {
			delete(s.tokens, t)
		}
	}
	s.tokens[token] = &imsIssued{info: info}
	s.issued++
	return token, info
}

// signRS256 encodes and signs a JWT by hand, independently of the JWT library
// the product uses, so that a bug there cannot hide here.
func signRS256(key *rsa.PrivateKey, header, payload map[string]any) string {
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(payload)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		// Signing with a valid key and SHA-256 does not fail; an unsigned
		// token will simply be rejected by its verifier.
		return input + "."
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// verifyRS256 decodes a compact JWT and verifies its RS256 signature with pub.
// Claims are decoded with numbers kept as json.Number.
func verifyRS256(token string, pub *rsa.PublicKey) (header, claims map[string]any, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not three dot-separated parts")
	}
	if header, err = decodeJWTPart(parts[0]); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if claims, err = decodeJWTPart(parts[1]); err != nil {
		return nil, nil, fmt.Errorf("payload: %w", err)
	}
	if header["alg"] != "RS256" {
		return header, claims, errJWTAlg
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return header, claims, fmt.Errorf("%w: signature is not base64url", errJWTSignature)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return header, claims, errJWTSignature
	}
	return header, claims, nil
}

var (
	errJWTAlg       = errors.New("alg is not RS256")
	errJWTSignature = errors.New("signature does not verify")
)

func decodeJWTPart(part string) (map[string]any, error) {
	raw, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// checkJWT maps verifyRS256's failures to IMS's answers.
func checkJWT(assertion string, pub *rsa.PublicKey) (map[string]any, *imsRefusal) {
	header, claims, err := verifyRS256(assertion, pub)
	switch {
	case errors.Is(err, errJWTAlg):
		return nil, refuse(http.StatusBadRequest, "invalid_signature", "JWT alg must be RS256.")
	case errors.Is(err, errJWTSignature):
		return nil, refuse(http.StatusBadRequest, "invalid_signature", "JWT signature does not match the integration's certificate.")
	case err != nil:
		return nil, refuse(http.StatusBadRequest, "invalid_token", "JWT could not be decoded.")
	}
	if typ, ok := header["typ"]; ok && typ != "JWT" {
		return nil, refuse(http.StatusBadRequest, "invalid_token", "JWT typ must be JWT.")
	}
	return claims, nil
}

func secretEqual(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
