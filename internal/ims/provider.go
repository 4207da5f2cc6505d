package ims

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

const (
	defaultReloadDebounce = 200 * time.Millisecond
	defaultPollInterval   = time.Minute
	// certWarnBefore: a service credentials certificate expires about a year
	// after it was made (spec §1); warn a month ahead.
	certWarnBefore    = 30 * 24 * time.Hour
	certCheckInterval = 12 * time.Hour
	// devTokenFirstWarning and devTokenLastWarning are how long before a
	// development token expires Run warns.
	devTokenFirstWarning = time.Hour
	devTokenLastWarning  = 10 * time.Minute
	// defaultTokenOrigin names a token given directly in messages.
	defaultTokenOrigin = "AEMPROXY_TOKEN"
)

// ProviderOptions configure NewProvider. Exactly one of Path, Token and
// Basic must be set.
type ProviderOptions struct {
	// Path is the credentials file, of any Kind; Run reloads it when it
	// changes. "" when Token or Basic is given instead.
	Path string
	// Kind is the kind of the file; "" detects it from the content (see
	// DetectKind), on every reload.
	Kind Kind
	// OAuthCredentialName chooses the OAuth credential in a Developer
	// Console workspace file that holds several.
	OAuthCredentialName string
	// Token is a local development token given directly, e.g. from the
	// environment. It cannot be reloaded.
	Token Secret
	// TokenOrigin names where Token came from in messages; "" means
	// "AEMPROXY_TOKEN".
	TokenOrigin string
	// Basic are HTTP Basic credentials given directly (a local AEM SDK).
	Basic *BasicCredentials
	// Exchange configures the exchanges with IMS. A nil Client is replaced by
	// one NewHTTPClient shared by every exchange of this provider. A nil Now
	// is Cache.Now, else time.Now.
	Exchange ExchangeOptions
	// Cache configures the token cache of exchanged credentials; its Name is
	// the route named in errors. A nil Now is Exchange.Now, else time.Now.
	Cache CacheOptions
	// Logger receives the provider's own lines (reloads, expiry and
	// permission warnings); give it the route's fields. The zero value
	// discards them.
	Logger zerolog.Logger
	// ReloadDebounce is how long Run waits for a burst of file events to end
	// before reading the file; 0 means 200 ms.
	ReloadDebounce time.Duration
	// PollInterval: Run also re-reads the file this often, for file systems
	// that report no events (network mounts, some container bind mounts);
	// 0 means 1 minute, negative never. Unchanged content costs a read and a
	// hash.
	PollInterval time.Duration
	// NoWatch stops Run from watching the file with fsnotify; it then relies
	// on PollInterval and Reload.
	NoWatch bool
	// OnReload, if set, is called after each reload that found new content:
	// with nil when the new credential is in use, else with why the file was
	// refused. It must not block.
	OnReload func(err error)
}

// Provider owns one route's credential, of any Kind, and hands out its
// tokens: exchanged ones (service credentials or OAuth) through a Cache, a
// development token as is, HTTP Basic as a Token with Scheme "Basic".
//
// Run reloads a credentials file when it changes: the new content is
// validated first, and a file that cannot be used leaves the current
// credential in place. When an exchanged credential changes, the token in
// hand is served until one from the new credential arrives. The kind may
// change across reloads.
//
// Token, Invalidate, State, APIKey, Kind, Once and Reload are safe for
// concurrent use, also with Run. Token costs one atomic load on top of the
// source's own fast path.
type Provider struct {
	path      string
	opt       ProviderOptions
	log       zerolog.Logger
	now       func() time.Time
	exchangeO ExchangeOptions
	cacheO    CacheOptions

	cur atomic.Pointer[credential]
	// changed nudges Run after a new credential was installed.
	changed chan struct{}

	reloadMu sync.Mutex
	// refusedKey identifies the content (or read error) last refused, so
	// that the same bad file is reported once; guarded by reloadMu.
	refusedKey string
	refusedErr error

	// watching is closed once Run has set up its watch (for tests).
	watching  chan struct{}
	watchOnce sync.Once
}

// credential is one loaded credential; replaced, never modified.
type credential struct {
	kind Kind
	// src is what Token calls.
	src TokenSource
	// exchange is the IMS exchange under cache; nil for other kinds.
	exchange TokenSource
	cache    *Cache
	dev      *DevToken
	// hash is of the file content; zero for a credential given directly.
	hash         [sha256.Size]byte
	apiKey       string
	clientID     string
	username     string
	certNotAfter time.Time
}

// NewProvider checks o, loads and validates the credential, and returns a
// Provider; it contacts no one. Every problem found (in o and in the file) is
// reported at once, each naming the file.
func NewProvider(o ProviderOptions) (*Provider, error) {
	var problems []error
	given := 0
	for _, set := range []bool{o.Path != "", o.Token != "", o.Basic != nil} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		problems = append(problems, errors.New("no credentials: give a credentials file, a token or basic credentials"))
	case given > 1:
		problems = append(problems, errors.New("give only one of a credentials file, a token and basic credentials"))
	}
	kindKnown := true
	if _, err := ParseKind(string(o.Kind)); err != nil {
		problems = append(problems, err)
		kindKnown = false // the file cannot be read as an unknown kind
	} else if o.Kind != "" {
		if o.Token != "" && o.Kind != KindDevToken {
			problems = append(problems, fmt.Errorf("kind %s was configured, but a development token was given", o.Kind))
		}
		if o.Basic != nil && o.Kind != KindBasic {
			problems = append(problems, fmt.Errorf("kind %s was configured, but basic credentials were given", o.Kind))
		}
	}
	if o.ReloadDebounce < 0 {
		problems = append(problems, fmt.Errorf("reload debounce %v: must not be negative", o.ReloadDebounce))
	}
	// Bad exchange options are reported here, once, and then dropped so
	// that checking the file does not report them again.
	if o.Exchange.BaseURL != nil {
		if err := checkBaseURL(o.Exchange.BaseURL); err != nil {
			problems = append(problems, err)
			o.Exchange.BaseURL = nil
		}
	}
	if l := o.Exchange.JWTLifetime; l != 0 && (l < minJWTLifetime || l > MaxJWTLifetime) {
		problems = append(problems, fmt.Errorf("JWT lifetime %v: must be between %v and %v", l, minJWTLifetime, MaxJWTLifetime))
		o.Exchange.JWTLifetime = 0
	}
	if o.ReloadDebounce == 0 {
		o.ReloadDebounce = defaultReloadDebounce
	}
	if o.PollInterval == 0 {
		o.PollInterval = defaultPollInterval
	}
	if o.TokenOrigin == "" {
		o.TokenOrigin = defaultTokenOrigin
	}
	now := o.Exchange.Now
	if now == nil {
		now = o.Cache.Now
	}
	if now == nil {
		now = time.Now
	}
	p := &Provider{
		path:      o.Path,
		opt:       o,
		log:       o.Logger,
		now:       now,
		exchangeO: o.Exchange,
		cacheO:    o.Cache,
		changed:   make(chan struct{}, 1),
		watching:  make(chan struct{}),
	}
	if p.exchangeO.Now == nil {
		p.exchangeO.Now = now
	}
	if p.cacheO.Now == nil {
		p.cacheO.Now = now
	}
	if p.exchangeO.Client == nil && o.Path != "" {
		client, err := NewHTTPClient(HTTPClientOptions{})
		if err != nil {
			problems = append(problems, err)
		}
		p.exchangeO.Client = client
	}
	if given != 1 || !kindKnown {
		return nil, errors.Join(problems...)
	}

	var c *credential
	var err error
	switch {
	case o.Path != "":
		var data []byte
		if data, err = readCredentialsFile(o.Path); err == nil {
			c, err = p.parse(data)
		}
		err = inFile(o.Path, err)
	case o.Token != "":
		var d *DevToken
		if d, err = NewDevToken(o.Token.Reveal(), o.TokenOrigin, now); err == nil {
			d.route = p.cacheO.Name
			c = &credential{kind: KindDevToken, src: d, dev: d}
		}
	default:
		if err = o.Basic.validate("basic username", "basic password"); err == nil {
			c = &credential{kind: KindBasic, src: newBasicSource(o.Basic), username: o.Basic.Username}
		}
	}
	if err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	p.install(c)
	p.logLoaded(c, nil, "credentials loaded")
	if p.path != "" {
		p.checkPermissions()
	}
	return p, nil
}

// inFile names the credentials file in err, on each line when err joins
// several problems; nil stays nil.
func inFile(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		wrapped := make([]error, len(errs))
		for i, e := range errs {
			wrapped[i] = fmt.Errorf("credentials file %s: %w", path, e)
		}
		return errors.Join(wrapped...)
	}
	return fmt.Errorf("credentials file %s: %w", path, err)
}

// readCredentialsFile reads at most maxCredentialsBytes of path.
func readCredentialsFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read credentials file: %w", err)
	}
	if len(data) > maxCredentialsBytes {
		return nil, errors.New("larger than 1 MiB; is it a credentials file?")
	}
	return data, nil
}

// parse turns file content into a credential of the configured or detected
// kind, without installing it.
func (p *Provider) parse(data []byte) (*credential, error) {
	s, err := inspect(data)
	if err != nil {
		return nil, err
	}
	kind := p.opt.Kind
	if kind == "" {
		if kind = s.kind(); kind == "" {
			return nil, s.unknown()
		}
	} else if missing := s.lacks(kind); missing != "" {
		msg := "kind " + string(kind) + " was configured, but the file has " + missing
		if d := s.kind(); d != "" {
			msg += " (it looks like " + string(d) + ")"
		}
		return nil, errors.New(msg)
	}
	c := &credential{kind: kind, hash: sha256.Sum256(data)}
	switch kind {
	case KindServiceCredentials:
		sc, err := ParseServiceCredentials(data)
		if err != nil {
			return nil, err
		}
		x, err := NewJWTExchange(sc, p.exchangeO)
		if err != nil {
			return nil, err
		}
		c.exchange, c.clientID, c.certNotAfter = x, sc.ClientID, sc.CertificateNotAfter()
	case KindOAuth:
		oc, err := ParseOAuthCredentials(data, p.opt.OAuthCredentialName)
		if err != nil {
			return nil, err
		}
		x, err := NewClientCredentialsExchange(oc, p.exchangeO)
		if err != nil {
			return nil, err
		}
		c.exchange, c.clientID, c.apiKey = x, oc.ClientID, oc.ClientID
	case KindDevToken:
		tok, err := ParseDevToken(data)
		if err != nil {
			return nil, err
		}
		d, err := NewDevToken(tok, p.path, p.now)
		if err != nil {
			return nil, err
		}
		d.reloadable, d.route = true, p.cacheO.Name
		c.src, c.dev = d, d
	case KindBasic:
		b, err := ParseBasicCredentials(data)
		if err != nil {
			return nil, err
		}
		c.src, c.username = newBasicSource(b), b.Username
	}
	return c, nil
}

// install makes c the credential in use. An exchanged credential reuses the
// current cache, if any, so that its token is served until c's arrives.
func (p *Provider) install(c *credential) {
	if c.exchange != nil {
		if old := p.cur.Load(); old != nil && old.cache != nil {
			c.cache = old.cache
			c.cache.SetSource(c.exchange)
		} else {
			c.cache = NewCache(c.exchange, p.cacheO)
		}
		c.src = c.cache
	}
	p.cur.Store(c)
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// logLoaded logs what was loaded, never a secret.
func (p *Provider) logLoaded(c, old *credential, msg string) {
	ev := p.log.Info().Str("kind", string(c.kind))
	if p.path != "" {
		ev = ev.Str("file", p.path)
	}
	if old != nil && old.kind != c.kind {
		ev = ev.Str("previous_kind", string(old.kind))
	}
	if c.clientID != "" {
		ev = ev.Str("client_id", c.clientID)
	}
	if c.username != "" {
		ev = ev.Str("username", c.username)
	}
	if !c.certNotAfter.IsZero() {
		ev = ev.Time("certificate_not_after", c.certNotAfter)
	}
	if c.dev != nil {
		if exp, ok := c.dev.ExpiresAt(); ok {
			ev = ev.Time("token_expires_at", exp)
		}
	}
	ev.Msg(msg)
	if c.dev != nil {
		if _, ok := c.dev.ExpiresAt(); !ok {
			p.log.Warn().Str("origin", c.dev.origin).
				Msg("the local development token does not say when it expires; using it until AEM rejects it")
		}
	}
}

// checkPermissions warns when other users may read the credentials file.
func (p *Provider) checkPermissions() {
	if runtime.GOOS == "windows" {
		return // mode bits do not describe Windows ACLs
	}
	fi, err := os.Stat(p.path)
	if err != nil {
		return
	}
	perm := fi.Mode().Perm()
	// Group access is fine when the group is one of ours: a Kubernetes
	// secret volume with fsGroup is mode 0440 and group-owned by the pod's
	// own group, the only way a non-root container can read it.
	if perm&0o007 != 0 || (perm&0o070 != 0 && !ownGroup(fi)) {
		p.log.Warn().Str("file", p.path).Str("mode", fmt.Sprintf("%#o", perm)).
			Msg("credentials file is accessible to other users; chmod 600 " + p.path)
	}
}

// ownGroup reports whether fi's group is one this process belongs to.
func ownGroup(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	gid := int(st.Gid)
	if gid == os.Getgid() {
		return true
	}
	groups, _ := os.Getgroups()
	return slices.Contains(groups, gid)
}

// String describes p without secrets.
func (p *Provider) String() string {
	s := "ims.Provider{kind=" + string(p.cur.Load().kind)
	if p.path != "" {
		s += " file=" + p.path
	}
	return s + "}"
}

// Kind returns the kind of the credential in use.
func (p *Provider) Kind() Kind { return p.cur.Load().kind }

// Token returns a token for the credential in use; see TokenSource. A
// development token that expired (or that AEM rejected while its expiry was
// unknown) gives an *UnavailableError wrapping a *DevTokenError.
func (p *Provider) Token(ctx context.Context) (Token, error) {
	return p.cur.Load().src.Token(ctx)
}

// Invalidate is told that AEM rejected accessToken; see Cache.Invalidate and
// DevToken.Invalidate. HTTP Basic credentials cannot be renewed: false.
func (p *Provider) Invalidate(accessToken string) bool {
	c := p.cur.Load()
	switch {
	case c.cache != nil:
		return c.cache.Invalidate(accessToken)
	case c.dev != nil:
		if !c.dev.Invalidate(accessToken) {
			return false
		}
		p.log.Error().Str("origin", c.dev.origin).Str("error", c.dev.check(p.now()).Error()).
			Msg("AEM rejected the local development token")
		return true
	}
	return false
}

// State describes the credential in use for health checks and metrics. For
// a development token, Valid and TokenExpiresAt come from the token (zero
// expiry if unknown); HTTP Basic is always Valid.
func (p *Provider) State() CacheState {
	c := p.cur.Load()
	switch {
	case c.cache != nil:
		return c.cache.State()
	case c.dev != nil:
		return c.dev.State()
	}
	return CacheState{Valid: true}
}

// APIKey returns the OAuth client id of the credential in use, which AEM's
// OpenAPI-based APIs want as X-Api-Key (spec §4), or "" for other kinds.
func (p *Provider) APIKey() string { return p.cur.Load().apiKey }

// Once fetches one token for the credential in use, bypassing the cache
// (one IMS exchange for service and OAuth credentials), e.g. for a command
// that prints a token.
func (p *Provider) Once(ctx context.Context) (Token, error) {
	c := p.cur.Load()
	if c.exchange != nil {
		return c.exchange.Token(ctx)
	}
	return c.src.Token(ctx)
}

// Reload re-reads the credentials file now (e.g. on SIGHUP). Unchanged
// content does nothing. New content is validated before it is used: if it
// cannot be used (or, for a development token, has already expired), the
// current credential stays, the reason is logged once per content, and it is
// returned. Without a file, Reload does nothing.
func (p *Provider) Reload() error {
	if p.path == "" {
		return nil
	}
	return p.reload()
}

func (p *Provider) reload() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	old := p.cur.Load()
	var c *credential
	var key string
	data, err := readCredentialsFile(p.path)
	if err == nil {
		sum := sha256.Sum256(data)
		if sum == old.hash {
			p.refusedKey, p.refusedErr = "", nil
			return nil
		}
		key = hex.EncodeToString(sum[:])
		if key == p.refusedKey {
			return p.refusedErr
		}
		if c, err = p.parse(data); err == nil && c.dev != nil {
			if exp, ok := c.dev.ExpiresAt(); ok && !p.now().Before(exp) {
				err = fmt.Errorf("the local development token in it expired at %s; %s", exp.UTC().Format(time.RFC3339), getDevTokenHowTo)
			}
		}
	} else {
		key = "read: " + err.Error()
	}
	if err != nil {
		err = inFile(p.path, err)
		if key != p.refusedKey {
			p.log.Warn().Str("file", p.path).Str("kind", string(old.kind)).Str("error", err.Error()).
				Msg("credentials file changed but cannot be used; keeping the current credentials")
			if p.opt.OnReload != nil {
				p.opt.OnReload(err)
			}
		}
		p.refusedKey, p.refusedErr = key, err
		return err
	}
	p.refusedKey, p.refusedErr = "", nil
	p.install(c)
	p.logLoaded(c, old, "credentials file reloaded")
	p.checkPermissions()
	if p.opt.OnReload != nil {
		p.opt.OnReload(nil)
	}
	return nil
}

// Run keeps the credential fresh until ctx is done: it runs the token cache
// of an exchanged credential, reloads the credentials file when it changes
// (see Reload; watched with fsnotify, plus polling), warns 1 hour and 10
// minutes before a development token expires and logs an error when it has,
// and checks a service credentials certificate every 12 hours (a warning
// from 30 days before it expires, an error after). It returns once
// everything it started has stopped. Call it at most once, in its own
// goroutine.
func (p *Provider) Run(ctx context.Context) {
	var fw *fileWatcher
	if p.path != "" && !p.opt.NoWatch {
		var err error
		if fw, err = newFileWatcher(p.path); err != nil {
			p.log.Warn().Str("file", p.path).Str("error", err.Error()).
				Msg("cannot watch the credentials file; changes are picked up by polling and on reload")
		} else {
			defer fw.close()
		}
	}
	p.watchOnce.Do(func() { close(p.watching) })
	if p.path != "" {
		// Catch a change made between NewProvider and the watch.
		_ = p.reload()
	}

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if fw != nil {
		events, watchErrs = fw.w.Events, fw.w.Errors
	}
	var poll <-chan time.Time
	if p.path != "" && p.opt.PollInterval > 0 {
		t := time.NewTicker(p.opt.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	debouncing := false
	var burstStart time.Time
	plan := time.NewTimer(time.Hour)
	defer plan.Stop()

	var (
		running   *Cache
		stopCache context.CancelFunc
		wg        sync.WaitGroup
	)
	defer func() {
		if stopCache != nil {
			stopCache()
		}
		wg.Wait()
	}()
	var notices devTokenNotices
	var certFor *credential
	var nextCertCheck time.Time

	for {
		c := p.cur.Load()
		if c.cache != running {
			if stopCache != nil {
				stopCache()
				stopCache = nil
			}
			running = c.cache
			if running != nil {
				cctx, cancel := context.WithCancel(ctx)
				stopCache = cancel
				cache := running
				wg.Go(func() { cache.Run(cctx) })
			}
		}
		now := p.now()
		var wake time.Time
		if c.dev != nil {
			wake = notices.check(p, c.dev, now)
		}
		if !c.certNotAfter.IsZero() {
			if certFor != c || !now.Before(nextCertCheck) {
				p.checkCertificate(c, now)
				certFor, nextCertCheck = c, now.Add(certCheckInterval)
			}
			if wake.IsZero() || nextCertCheck.Before(wake) {
				wake = nextCertCheck
			}
		}
		// Re-plan at least hourly, in case the wall clock jumped.
		wait := time.Hour
		if !wake.IsZero() {
			wait = min(max(wake.Sub(now), 0), time.Hour)
		}
		plan.Reset(wait)

		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		case <-plan.C:
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if !fw.relevant(ev) {
				continue
			}
			// Wait for the burst to end (an editor's save, a Kubernetes
			// swap), but not forever.
			switch {
			case !debouncing:
				debouncing, burstStart = true, time.Now()
				debounce.Reset(p.opt.ReloadDebounce)
			case time.Since(burstStart) < 10*p.opt.ReloadDebounce:
				debounce.Reset(p.opt.ReloadDebounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			p.log.Warn().Str("file", p.path).Str("error", err.Error()).Msg("watching the credentials file")
		case <-debounce.C:
			debouncing = false
			_ = p.reload()
			fw.retarget()
		case <-poll:
			_ = p.reload()
			fw.retarget()
		}
	}
}

// devTokenNotices remembers which expiry notices Run has logged for one
// development token.
type devTokenNotices struct {
	dev *DevToken
	// stage: 0 none, 1 the 1-hour warning, 2 the 10-minute warning, 3 the
	// expiry error.
	stage int
}

// check logs the notice due at now, if not yet logged, and returns when
// the next one is due (zero if none).
func (n *devTokenNotices) check(p *Provider, d *DevToken, now time.Time) time.Time {
	if n.dev != d {
		n.dev, n.stage = d, 0
	}
	exp, ok := d.ExpiresAt()
	if !ok {
		return time.Time{}
	}
	left := exp.Sub(now)
	stage := 0
	switch {
	case left <= 0:
		stage = 3
	case left <= devTokenLastWarning:
		stage = 2
	case left <= devTokenFirstWarning:
		stage = 1
	}
	if stage > n.stage {
		n.stage = stage
		hint := (&DevTokenError{ExpiredAt: exp, Origin: d.origin, Reloadable: d.reloadable}).Error()
		if stage == 3 {
			p.log.Error().Str("origin", d.origin).Time("token_expires_at", exp).
				Msg(hint + "; until then requests to AEM fail")
		} else {
			_, how, _ := strings.Cut(hint, "; ")
			p.log.Warn().Str("origin", d.origin).Time("token_expires_at", exp).
				Msg("the local development token expires in " + left.Round(time.Minute).String() + "; " + how)
		}
	}
	switch n.stage {
	case 0:
		return exp.Add(-devTokenFirstWarning)
	case 1:
		return exp.Add(-devTokenLastWarning)
	case 2:
		return exp
	}
	return time.Time{}
}

// checkCertificate logs when the certificate of service credentials expires
// within certWarnBefore, or has expired.
func (p *Provider) checkCertificate(c *credential, now time.Time) {
	na := c.certNotAfter
	left := na.Sub(now)
	switch {
	case left <= 0:
		p.log.Error().Str("file", p.path).Str("client_id", c.clientID).Time("certificate_not_after", na).
			Msg("the certificate of the service credentials (integration.publicKey) has expired, so IMS refuses the JWT exchange: create new service credentials in the AEM Developer Console and save them over " + p.path)
	case left <= certWarnBefore:
		days := int(left / (24 * time.Hour))
		p.log.Warn().Str("file", p.path).Str("client_id", c.clientID).Time("certificate_not_after", na).Int("days_left", days).
			Msg("the certificate of the service credentials (integration.publicKey) expires in " + strconv.Itoa(days) + " days: create new service credentials in the AEM Developer Console and save them over " + p.path)
	}
}
