package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile creates dir/name with some content, making parent directories.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfigValidates(t *testing.T) {
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "aemproxy.yaml", string(example))
	writeFile(t, dir, "secrets/author-service-credentials.json", "{}")
	writeFile(t, dir, "secrets/publish-service-credentials.json", "{}")

	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got := len(c.Routes); got != 2 {
		t.Fatalf("routes: got %d; want 2 (author and publish)", got)
	}
	author, publish := c.Routes[0], c.Routes[1]
	if author.Name != "author" || publish.Name != "publish" {
		t.Errorf("route names: got %q, %q; want author, publish", author.Name, publish.Name)
	}
	if got, want := author.Credentials, filepath.Join(dir, "secrets/author-service-credentials.json"); got != want {
		t.Errorf("credentials path: got %q; want %q (relative to the config file)", got, want)
	}
	if got := author.Upstream.Host; got != "author-p12345-e67890.adobeaemcloud.com" {
		t.Errorf("author upstream host: got %q", got)
	}
	if publish.Listen != "127.0.0.1:8081" {
		t.Errorf("publish listen: got %q; want 127.0.0.1:8081", publish.Listen)
	}
	if author.Access.APIKeyHeader != "X-Aemproxy-Key" {
		t.Errorf("api_key_header default: got %q; want X-Aemproxy-Key", author.Access.APIKeyHeader)
	}
	if author.ResponseHeaderTimeout != 60*time.Second || author.ReplayBodyLimit != 64<<10 || author.PathPrefix != "/" {
		t.Errorf("route defaults not applied: %+v", author)
	}
}

func TestDecodeReportsEveryProblemAtOnce(t *testing.T) {
	in := `
listen: 127.0.0.1:8080
colour: blue
ims:
  timeout: soon
routes:
  - name: author
    upstream: ftp://example.com
    pathprefix: /x
`
	_, err := Decode(strings.NewReader(in))
	if err == nil {
		t.Fatal("Decode: got nil error; want problems")
	}
	msg := err.Error()
	for _, want := range []string{
		"key colour is not a known top-level key",
		"line 5", "duration",
		`"ftp://example.com": want an http:// or https:// URL`,
		"key pathprefix is not a known key of a route",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	creds := writeFile(t, dir, "creds.json", "{}")
	upstream, _ := ParseURL("https://author-p1-e2.adobeaemcloud.com")
	good := func() Config {
		c := Default()
		c.Routes = []Route{RouteDefaults(Route{Name: "author", Upstream: upstream, Credentials: creds})}
		return c
	}
	if err := func() error { c := good(); return c.Validate() }(); err != nil {
		t.Fatalf("good config: %v", err)
	}

	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"no routes", func(c *Config) { c.Routes = nil }, []string{"routes: none configured"}},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, []string{`listen: "8080" is not host:port`}},
		{"bad port", func(c *Config) { c.AdminListen = "127.0.0.1:99999" }, []string{"admin_listen", "port"}},
		{"same ports", func(c *Config) { c.AdminListen = c.Listen }, []string{"admin_listen: 127.0.0.1:8080 is also the proxy listen address"}},
		{"log", func(c *Config) { c.Log.Level = "loud"; c.Log.Format = "xml" }, []string{`log.level: "loud"`, `log.format: "xml"`}},
		{"jwt lifetime", func(c *Config) { c.IMS.JWTLifetime = 48 * time.Hour }, []string{"ims.jwt_lifetime: must be between 10s and 24h"}},
		{"missing credentials file", func(c *Config) { c.Routes[0].Credentials = filepath.Join(dir, "nope.json") }, []string{"routes[0] (author).credentials", "no such file"}},
		{"upstream with path", func(c *Config) {
			c.Routes[0].Upstream, _ = ParseURL("https://author.example.com/content")
		}, []string{"must be an origin"}},
		{"upstream with user info", func(c *Config) {
			c.Routes[0].Upstream, _ = ParseURL("https://admin:hunter2@author.example.com")
		}, []string{"user info is not allowed"}},
		{"no upstream", func(c *Config) { c.Routes[0].Upstream = nil }, []string{"routes[0] (author).upstream: missing"}},
		{"duplicate names", func(c *Config) { c.Routes = append(c.Routes, c.Routes[0]) }, []string{`routes[1] (author).name: "author" is also the name of routes[0]`}},
		{"unnamed", func(c *Config) { c.Routes[0].Name = "" }, []string{"routes[0].name: empty"}},
		{"prefix", func(c *Config) { c.Routes[0].PathPrefix = "content" }, []string{`path_prefix: "content" must start with /`}},
		{"dotdot prefix", func(c *Config) { c.Routes[0].PathPrefix = "/a/../b" }, []string{"must be a clean path"}},
		{"strip root", func(c *Config) { c.Routes[0].StripPrefix = true }, []string{"strip_prefix"}},
		{"bad host", func(c *Config) { c.Routes[0].Hosts = []string{"bad host"} }, []string{`hosts[0]: "bad host"`}},
		{"replay limit", func(c *Config) { c.Routes[0].ReplayBodyLimit = 1 << 30 }, []string{"replay_body_limit"}},
		{"proxy url", func(c *Config) { c.Routes[0].ProxyURL = "socks://user:pw@proxy" }, []string{"proxy_url", "direct"}},
		{"route on admin address", func(c *Config) { c.Routes[0].Listen = c.AdminListen }, []string{"is the admin address"}},
		{"unknown kind", func(c *Config) { c.Routes[0].CredentialsKind = "jwt" }, []string{`credentials_kind: "jwt" is not one of service_credentials, oauth_server_to_server, dev_token, basic, sdk_defaults, none`}},
		{"none with credentials", func(c *Config) { c.Routes[0].CredentialsKind = "none" }, []string{"none takes no credentials"}},
		{"two credentials", func(c *Config) { c.Routes[0].Token = "tok" }, []string{"give one of credentials, basic and AEMPROXY_TOKEN"}},
		{"basic without password", func(c *Config) {
			c.Routes[0].Credentials = ""
			c.Routes[0].Basic = Basic{Username: "admin"}
		}, []string{"give exactly one of password_file and password_env"}},
		{"basic kind without anything", func(c *Config) {
			c.Routes[0].Credentials = ""
			c.Routes[0].CredentialsKind = "basic"
		}, []string{"credentials_kind is basic"}},
		{"oauth name on another kind", func(c *Config) {
			c.Routes[0].CredentialsKind = "dev_token"
			c.Routes[0].OAuthCredential = "x"
		}, []string{"oauth_credential: only applies"}},
		{"api key path", func(c *Config) { c.Routes[0].APIKeyPaths = []string{"adobe"} }, []string{`api_key_paths[0]: "adobe" must start with /`}},
		{"access, policy and limits at once", func(c *Config) {
			c.Routes[0].Access = Access{
				AllowCIDRs:     []string{"10.0.0.0/8", "10.0.0.0/33", "intranet"},
				APIKeysFile:    filepath.Join(dir, "no-keys"),
				APIKeyHeader:   "X Key",
				RequiredHeader: "X-Requested-By aemproxy",
			}
			c.Routes[0].Policy = Policy{AllowMethods: []string{"GET", "FETCH"}, DenyMethods: []string{"delete"}, AllowPaths: []string{"content"}, DenyPaths: []string{"/crx", "/a/../b"}}
			c.Routes[0].Limits = Limits{MaxBodyBytes: -1, MaxConcurrent: -2}
		}, []string{
			`access.allow_cidrs[1]: "10.0.0.0/33"`, `access.allow_cidrs[2]: "intranet"`,
			"access.api_keys_file", "no-keys", `access.api_key_header: "X Key"`, "access.required_header",
			`policy.allow_methods[1]: method "FETCH"`, `policy.deny_methods[0]: method "delete"`,
			`policy.allow_paths[0]: path "content"`, `policy.deny_paths[1]: path "/a/../b"`,
			"limits.max_body_bytes", "limits.max_concurrent",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate: got nil; want an error mentioning %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), ":pw@") {
				t.Errorf("error reveals a password: %q", err)
			}
		})
	}
}

func TestValidateCollectsAllProblems(t *testing.T) {
	c := Default()
	c.Listen = "nope"
	c.Log.Level = "loud"
	err := c.Validate()
	if err == nil {
		t.Fatal("got nil; want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) < 3 {
		t.Errorf("got %d problems (%q); want listen, log.level and routes reported together", len(lines), err)
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	c, err := Decode(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.AdminListen != "127.0.0.1:9090" {
		t.Errorf("got listen %q admin %q; want the loopback defaults", c.Listen, c.AdminListen)
	}
}

func FuzzDecode(f *testing.F) {
	example, err := os.ReadFile("../../config.example.yaml")
	if err == nil {
		f.Add(string(example))
	}
	f.Add("routes: [{name: a, upstream: 'http://[::1]:4502'}]")
	f.Add("listen: [\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Decode(strings.NewReader(in))
		if err != nil {
			return
		}
		_ = c.Validate() // must not panic
	})
}

// TestExampleGuardBlockValidates uncomments the access, policy and limits
// shown in config.example.yaml and checks that they are a valid
// configuration, so that the example cannot rot.
func TestExampleGuardBlockValidates(t *testing.T) {
	example, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(example), "\n")
	in := false
	uncommented := 0
	for i, l := range lines {
		switch {
		case l == "    # access:":
			in = true
		case in && !strings.HasPrefix(l, "    # "):
			in = false
		}
		if in {
			lines[i] = "    " + strings.TrimPrefix(l, "    # ")
			uncommented++
		}
	}
	if uncommented < 15 {
		t.Fatalf("uncommented %d lines; want the whole access/policy/limits block", uncommented)
	}
	dir := t.TempDir()
	path := writeFile(t, dir, "aemproxy.yaml", strings.Join(lines, "\n"))
	writeFile(t, dir, "secrets/author-service-credentials.json", "{}")
	writeFile(t, dir, "secrets/publish-service-credentials.json", "{}")
	writeFile(t, dir, "secrets/author-api-keys", "an-api-key-0123456789\n")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	a := c.Routes[0]
	if len(a.Access.AllowCIDRs) != 1 || a.Access.APIKeysFile != filepath.Join(dir, "secrets/author-api-keys") ||
		a.Access.RequiredHeader != "X-Requested-By: aemproxy" || len(a.Policy.DenyPaths) < 5 {
		t.Errorf("author route: got access %+v, policy %+v", a.Access, a.Policy)
	}
}
