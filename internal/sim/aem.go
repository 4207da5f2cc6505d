package sim

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AEM is a simulated AEM as a Cloud Service origin. It checks bearer tokens
// with Validate, records what it receives, and serves the few endpoints that
// aemproxy's behaviour depends on. Safe for concurrent use.
//
// Endpoints (all behind the bearer check unless Validate is nil):
//
//	GET  /libs/granite/csrf/token.json      {"token": "..."} (see CSRF)
//	GET  /bin/redirect?to=/path             302 to the same origin
//	GET  /content/dam/…/original            302 to BlobURL (a foreign host)
//	POST /content/dam/….initiateUpload.json 201 with uploadURIs on BlobURL
//	GET  /aemproxy-sim/bytes?n=N            N bytes, streamed, not stored
//	PUT  /aemproxy-sim/upload (or POST)     counts the body, answers {"bytes":N}
//	GET  /aemproxy-sim/sse?n=N              N server-sent events, flushed one by one
//	GET  /aemproxy-sim/status?code=N        answers with status N
//	anything else                           JSON describing the request
type AEM struct {
	// Validate checks a bearer token; a non-nil error answers 401. Nil means
	// every request is accepted, with or without Authorization.
	Validate func(token string) error
	// BlobURL is the foreign origin used for binary redirects and upload
	// URIs, e.g. an httptest server standing in for blob storage.
	BlobURL string
	// CSRF makes POST, PUT, PATCH and DELETE need a CSRF-Token header
	// holding a token this AEM issued from /libs/granite/csrf/token.json
	// that has neither expired nor been revoked, as AEM's CSRF filter does;
	// other writes are answered 403. Set it before serving.
	CSRF bool
	// CSRFLifetime is how long an issued CSRF token is valid; 0 means 10
	// minutes, as on AEM.
	CSRFLifetime time.Duration
	// Now tells the time for CSRF token expiry; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	requests []Request
	count    int
	csrf     map[string]time.Time // issued CSRF tokens and their expiry
	csrfN    int
}

// maxCSRFTokens bounds the issued CSRF tokens remembered.
const maxCSRFTokens = 10000

// RevokeCSRF makes every CSRF token issued so far invalid, as a restart of
// AEM with a new key would.
func (a *AEM) RevokeCSRF() {
	a.mu.Lock()
	a.csrf = nil
	a.mu.Unlock()
}

func (a *AEM) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// issueCSRF returns a new CSRF token: a JWT-shaped string whose payload
// carries exp, like AEM's, with a serial number for a signature.
func (a *AEM) issueCSRF() string {
	life := a.CSRFLifetime
	if life <= 0 {
		life = 10 * time.Minute
	}
	now := a.now()
	exp := now.Add(life)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.csrfN++
	enc := base64.RawURLEncoding
	tok := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(`{"exp":`+strconv.FormatInt(exp.Unix(), 10)+`,"iat":`+strconv.FormatInt(now.Unix(), 10)+`}`)) + "." +
		enc.EncodeToString([]byte("sim-csrf-"+strconv.Itoa(a.csrfN)))
	if a.csrf == nil || len(a.csrf) >= maxCSRFTokens {
		a.csrf = map[string]time.Time{}
	}
	a.csrf[tok] = exp
	return tok
}

// validCSRF reports whether tok is an issued, unexpired, unrevoked token.
func (a *AEM) validCSRF(tok string) bool {
	a.mu.Lock()
	exp, ok := a.csrf[tok]
	a.mu.Unlock()
	return ok && a.now().Before(exp)
}

// Request is what the simulated AEM recorded of one request.
type Request struct {
	Method   string
	Host     string
	Path     string
	RawQuery string
	Header   http.Header
	// BodyBytes counts the request body; bodies are not stored.
	BodyBytes int64
}

// maxRecorded bounds the memory the recording may use under load.
const maxRecorded = 1000

// NewAEM returns a simulated AEM that accepts the tokens validate accepts.
func NewAEM(validate func(token string) error) *AEM {
	return &AEM{Validate: validate, BlobURL: "https://blob.example.invalid"}
}

// Requests returns the most recent requests received (at most 1000), oldest
// first.
func (a *AEM) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// Count reports how many requests arrived in all, including rejected ones.
func (a *AEM) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

// Reset forgets the recorded requests.
func (a *AEM) Reset() {
	a.mu.Lock()
	a.requests, a.count = nil, 0
	a.mu.Unlock()
}

func (a *AEM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()}
	var n int64
	if r.Body != nil {
		n, _ = io.Copy(io.Discard, r.Body)
	}
	rec.BodyBytes = n
	a.mu.Lock()
	a.count++
	if len(a.requests) == maxRecorded {
		a.requests = append(a.requests[:0], a.requests[1:]...)
	}
	a.requests = append(a.requests, rec)
	a.mu.Unlock()

	if a.Validate != nil {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || token == "" {
			writeAEMJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing bearer token"})
			return
		}
		if err := a.Validate(token); err != nil {
			writeAEMJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid token"})
			return
		}
	}

	p := r.URL.Path
	q := r.URL.Query()
	if a.CSRF {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
			if !a.validCSRF(r.Header.Get("CSRF-Token")) {
				writeAEMJSON(w, http.StatusForbidden, map[string]string{"error": "forbidden", "message": "the provided CSRF token is invalid"})
				return
			}
		}
	}
	switch {
	case p == "/libs/granite/csrf/token.json":
		writeAEMJSON(w, http.StatusOK, map[string]string{"token": a.issueCSRF()})
	case p == "/bin/redirect":
		to := q.Get("to")
		if !strings.HasPrefix(to, "/") {
			to = "/"
		}
		http.Redirect(w, r, "http://"+r.Host+to, http.StatusFound)
	case strings.HasPrefix(p, "/content/dam/") && strings.HasSuffix(p, "/original"):
		http.Redirect(w, r, a.BlobURL+"/blobs"+strings.TrimSuffix(strings.TrimPrefix(p, "/content/dam"), "/original")+"?sig=sim", http.StatusFound)
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/content/dam/") && strings.HasSuffix(p, ".initiateUpload.json"):
		folder := strings.TrimSuffix(p, ".initiateUpload.json")
		writeAEMJSON(w, http.StatusCreated, map[string]any{
			"completeURI": folder + ".completeUpload.json",
			"folderPath":  folder,
			"files": []map[string]any{{
				"fileName":   q.Get("fileName"),
				"uploadURIs": []string{a.BlobURL + "/upload/part1?sig=sim"},
				"mimeType":   "application/octet-stream",
			}},
		})
	case p == "/aemproxy-sim/bytes":
		size, err := strconv.ParseInt(q.Get("n"), 10, 64)
		if err != nil || size < 0 {
			writeAEMJSON(w, http.StatusBadRequest, map[string]string{"error": "n must be a byte count"})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		writeZeros(w, size)
	case p == "/aemproxy-sim/upload":
		writeAEMJSON(w, http.StatusOK, map[string]int64{"bytes": n})
	case p == "/aemproxy-sim/sse":
		events, _ := strconv.Atoi(q.Get("n"))
		events = min(max(events, 1), 100)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range events {
			io.WriteString(w, "data: event "+strconv.Itoa(i)+"\n\n")
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	case p == "/aemproxy-sim/status":
		code, err := strconv.Atoi(q.Get("code"))
		if err != nil || code < 200 || code > 599 {
			code = http.StatusBadRequest
		}
		writeAEMJSON(w, code, map[string]int{"status": code})
	default:
		writeAEMJSON(w, http.StatusOK, map[string]any{
			"path":   p,
			"method": r.Method,
			"host":   r.Host,
			"bytes":  n,
			"title":  "Simulated AEM content at " + p,
		})
	}
}

// writeZeros streams size zero bytes without holding more than 32 KiB.
func writeZeros(w io.Writer, size int64) {
	buf := make([]byte, 32<<10)
	for size > 0 {
		chunk := buf[:min(int64(len(buf)), size)]
		m, err := w.Write(chunk)
		if err != nil {
			return
		}
		size -= int64(m)
	}
}

func writeAEMJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
