package deploy

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/aemproxy/aemproxy/internal/config"
)

// repoRoot is the repository root, relative to this package's directory
// (where go test runs the tests).
const repoRoot = ".."

func repoPath(rel string) string { return filepath.Join(repoRoot, filepath.FromSlash(rel)) }

func readRepoFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --- Dockerfile ---

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd   string   // upper case: FROM, COPY, RUN, ...
	flags []string // leading --flags: --from=build, --mount=..., --platform=...
	args  string   // the rest, raw
	line  int      // where it starts
}

// stage is one FROM and what follows it.
type stage struct {
	base, name string
	instrs     []instruction
}

func (s *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

func (in instruction) flag(name string) (string, bool) {
	for _, f := range in.flags {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// parseDockerfile reads the repository's Dockerfile: comments are dropped,
// lines ending in a backslash are joined (comment lines inside a
// continuation are skipped, as Docker does).
func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(repoPath("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []stage
	sc := bufio.NewScanner(f)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return
		}
		cmd, rest, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), line: start}
		rest = strings.TrimSpace(rest)
		for strings.HasPrefix(rest, "--") {
			var f string
			f, rest, _ = strings.Cut(rest, " ")
			in.flags = append(in.flags, f)
			rest = strings.TrimSpace(rest)
		}
		in.args = rest
		if in.cmd == "FROM" {
			fields := strings.Fields(rest)
			s := stage{base: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
			}
			return
		}
		s := &stages[len(stages)-1]
		s.instrs = append(s.instrs, in)
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body)
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	if len(stages) == 0 {
		t.Fatal("Dockerfile: no FROM")
	}
	return stages
}

// image is what the Dockerfile's final stage says about the running
// container.
type image struct {
	base       string
	env        map[string]string
	uid, gid   int
	user       string
	expose     []int
	entrypoint []string
	healthchk  bool
}

func finalImage(t *testing.T, stages []stage) image {
	t.Helper()
	s := stages[len(stages)-1]
	img := image{base: s.base, env: map[string]string{}, uid: -1, gid: -1}
	for _, in := range s.instrs {
		switch in.cmd {
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile:%d: ENV %q: write ENV KEY=value", in.line, in.args)
				}
				img.env[k] = strings.Trim(v, `"`)
			}
		case "USER":
			img.user = in.args
			u, g, _ := strings.Cut(in.args, ":")
			var err error
			if img.uid, err = strconv.Atoi(u); err != nil {
				img.uid = -1
			}
			if g != "" {
				if img.gid, err = strconv.Atoi(g); err != nil {
					img.gid = -1
				}
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				p, _, _ = strings.Cut(p, "/")
				n, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("Dockerfile:%d: EXPOSE %q", in.line, in.args)
				}
				img.expose = append(img.expose, n)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &img.entrypoint); err != nil {
				t.Fatalf("Dockerfile:%d: ENTRYPOINT must be in exec (JSON) form so that signals reach aemproxy: %v", in.line, err)
			}
		case "HEALTHCHECK":
			img.healthchk = true
		}
	}
	return img
}

// --- .dockerignore ---

type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// dockerignore reads .dockerignore. A pattern excludes a path when it
// matches the path or one of its parent directories; the last matching
// pattern wins, and a "!" pattern lets a path back in. "**" matches any
// number of directories (moby/patternmatcher semantics, simplified).
func dockerignore(t *testing.T) []ignoreRule {
	t.Helper()
	data, err := os.ReadFile(repoPath(".dockerignore"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var rules []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r := ignoreRule{}
		if p, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, strings.TrimSpace(p)
		}
		line = strings.TrimPrefix(path.Clean("/"+line), "/")
		r.re = globRegexp(line)
		rules = append(rules, r)
	}
	return rules
}

func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if strings.HasPrefix(pattern[i:], "**/") {
				b.WriteString("(.*/)?")
				i += 2
			} else if strings.HasPrefix(pattern[i:], "**") {
				b.WriteString(".*")
				i++
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// excluded reports whether rel (slash-separated, relative to the context
// root) is left out of the build context.
func excluded(rules []ignoreRule, rel string) bool {
	out := false
	for _, r := range rules {
		for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			if r.re.MatchString(p) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// --- the program's sources ---

// goSources returns the non-test Go files of a repository directory.
func goSources(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoPath(dir), "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.ToSlash(f)] = string(b)
	}
	if len(out) == 0 {
		t.Fatalf("no Go sources in %s", dir)
	}
	return out
}

var (
	settingRe  = regexp.MustCompile(`(?m)^\t\{"([a-z][a-z0-9-]*)",`)
	flagDefRe  = regexp.MustCompile(`\.(?:String|Bool|Duration|Int|Int64|Uint|Float64)\("([a-z][a-z0-9-]*)",`)
	envLitRe   = regexp.MustCompile(`"(AEMPROXY_[A-Z0-9_]+)"`)
	routeDefRe = regexp.MustCompile(`\b(?:Get|Handle|HandleFunc)\("(/[a-z]+)"`)
)

// cliNames are the command line's flag names (without dashes) and
// environment variables, read from cmd/aemproxy.
type cliNames struct {
	flags map[string]bool // every subcommand's, plus h and help
	serve map[string]bool // those of the proxy itself (aemproxy [flags])
	env   map[string]bool
}

func readCLI(t *testing.T) cliNames {
	t.Helper()
	c := cliNames{flags: map[string]bool{"h": true, "help": true}, serve: map[string]bool{"h": true, "help": true}, env: map[string]bool{}}
	for file, src := range goSources(t, "cmd/aemproxy") {
		for _, m := range settingRe.FindAllStringSubmatch(src, -1) {
			c.flags[m[1]], c.serve[m[1]] = true, true
			c.env["AEMPROXY_"+strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))] = true
		}
		for _, m := range flagDefRe.FindAllStringSubmatch(src, -1) {
			c.flags[m[1]] = true
			if strings.HasSuffix(file, "/flags.go") {
				c.serve[m[1]] = true
			}
		}
		for _, m := range envLitRe.FindAllStringSubmatch(src, -1) {
			c.env[m[1]] = true
		}
	}
	for _, must := range []string{"config", "listen", "admin-listen", "credentials"} {
		if !c.serve[must] {
			t.Fatalf("could not read the flags from cmd/aemproxy (no --%s); update readCLI", must)
		}
	}
	return c
}

// adminPaths are the paths the admin server routes, read from internal/ops.
func adminPaths(t *testing.T) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	for _, src := range goSources(t, "internal/ops") {
		for _, m := range routeDefRe.FindAllStringSubmatch(src, -1) {
			paths[m[1]] = true
		}
	}
	if !paths["/healthz"] {
		t.Fatalf("could not read the admin routes from internal/ops (got %v); update adminPaths", keys(paths))
	}
	return paths
}

// flagValue finds --name VALUE, --name=VALUE or -name VALUE in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
		if a == name && i+1 < len(args) && len(args[i]) > len(name) {
			return args[i+1], true
		}
	}
	return "", false
}

// flagNames returns the names of the --flags in args.
func flagNames(args []string) []string {
	var out []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			out = append(out, name)
		}
	}
	return out
}

func splitHostPort(t *testing.T, what, addr string) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q is not host:port", what, addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s: %q: port is not a number", what, addr)
	}
	return host, n
}

func isUnspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// withFiles returns a copy of cfg in which every file it names is replaced
// by an existing empty file, so that Validate checks everything else.
func withFiles(t *testing.T, cfg config.Config) config.Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	set := func(p *string) {
		if *p != "" {
			*p = f
		}
	}
	set(&cfg.IMS.CAFile)
	cfg.Routes = append([]config.Route(nil), cfg.Routes...)
	for i := range cfg.Routes {
		set(&cfg.Routes[i].Credentials)
		set(&cfg.Routes[i].Basic.PasswordFile)
		set(&cfg.Routes[i].CAFile)
	}
	return cfg
}

// filePaths lists every file path a config names, with its key.
func filePaths(cfg config.Config) map[string]string {
	out := map[string]string{}
	add := func(key, p string) {
		if p != "" {
			out[key] = p
		}
	}
	add("ims.ca_file", cfg.IMS.CAFile)
	for i, r := range cfg.Routes {
		where := "routes[" + strconv.Itoa(i) + "]"
		add(where+".credentials", r.Credentials)
		add(where+".basic.password_file", r.Basic.PasswordFile)
		add(where+".ca_file", r.CAFile)
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
