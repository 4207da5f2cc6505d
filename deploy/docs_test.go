package deploy

import (
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docFiles are the Markdown files these tests hold to the code.
func docFiles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{"docs/*.md", "deploy/*.md", "deploy/*/*.md"} {
		m, err := filepath.Glob(repoPath(pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			rel, _ := filepath.Rel(repoRoot, f)
			out = append(out, filepath.ToSlash(rel))
		}
	}
	if len(out) == 0 {
		t.Fatal("no docs found")
	}
	return out
}

var metricNameRe = regexp.MustCompile(`aemproxy_[a-z0-9_]+`)

// TestMetricsReference checks docs/metrics.md against the metric names
// registered in internal/proxy and internal/ops: every one is documented,
// and every aemproxy_ name the doc uses exists (histogram series suffixes
// allowed).
func TestMetricsReference(t *testing.T) {
	defined := map[string]bool{}
	for _, f := range []string{"internal/proxy/metrics.go", "internal/ops/metrics.go"} {
		for _, m := range regexp.MustCompile(`"(aemproxy_[a-z0-9_]+)"`).FindAllStringSubmatch(readRepoFile(t, f), -1) {
			defined[m[1]] = true
		}
	}
	if len(defined) < 5 {
		t.Fatalf("found only %v in the metrics sources; update this test", keys(defined))
	}
	doc := readRepoFile(t, "docs/metrics.md")
	for _, name := range keys(defined) {
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/metrics.md does not document %s", name)
		}
	}
	for _, name := range metricNameRe.FindAllString(doc, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && defined[b] {
				base = b
			}
		}
		if !defined[base] {
			t.Errorf("docs/metrics.md names %s, which the code does not register", name)
		}
	}
}

var (
	fenceRe      = regexp.MustCompile("(?s)```[a-z]*\n(.*?)```")
	inlineFlagRe = regexp.MustCompile("`(--[a-z][a-z0-9-]*)")
	envNameRe    = regexp.MustCompile(`\bAEMPROXY_[A-Z0-9_]*[A-Z0-9]\b`)
	// Variables Kubernetes injects for a Service named aemproxy, which the
	// docs mention to explain enableServiceLinks: false.
	injectedEnvRe = regexp.MustCompile(`^AEMPROXY_(SERVICE|PORT)`)
)

// commandFlags returns the --flags given to aemproxy in the shell commands
// of a code block: lines joined at trailing backslashes, split at pipes,
// &&, ; and $( ), and taken from segments whose command (after VAR=value
// assignments, sudo, go run, or a "--" that ends another tool's options) is
// aemproxy.
func commandFlags(block string) []string {
	block = strings.ReplaceAll(block, "\\\n", " ")
	var out []string
	for _, line := range strings.Split(block, "\n") {
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		for _, seg := range regexp.MustCompile(`\||&&|;|\$\(|\)`).Split(line, -1) {
			words := strings.Fields(seg)
			if i := indexOf(words, "--"); i >= 0 {
				words = words[i+1:]
			}
			for len(words) > 0 && (strings.Contains(words[0], "=") || words[0] == "sudo") {
				words = words[1:]
			}
			if len(words) > 2 && words[0] == "go" && words[1] == "run" {
				words = words[2:]
			}
			if len(words) == 0 || path.Base(words[0]) != "aemproxy" {
				continue
			}
			out = append(out, flagNames(words[1:])...)
		}
	}
	return out
}

func indexOf(words []string, w string) int {
	for i, x := range words {
		if x == w {
			return i
		}
	}
	return -1
}

// TestDocsUseRealFlagsAndVariables checks that every aemproxy flag in the
// docs' commands and inline code, and every AEMPROXY_ variable, exists in
// cmd/aemproxy.
func TestDocsUseRealFlagsAndVariables(t *testing.T) {
	cli := readCLI(t)
	for _, f := range docFiles(t) {
		doc := readRepoFile(t, f)
		var flags []string
		for _, m := range fenceRe.FindAllStringSubmatch(doc, -1) {
			flags = append(flags, commandFlags(m[1])...)
		}
		prose := fenceRe.ReplaceAllString(doc, "")
		for _, m := range inlineFlagRe.FindAllStringSubmatch(prose, -1) {
			flags = append(flags, strings.TrimPrefix(m[1], "--"))
		}
		for _, name := range flags {
			if !cli.flags[name] {
				t.Errorf("%s: aemproxy has no flag --%s", f, name)
			}
		}
		for _, name := range envNameRe.FindAllString(doc, -1) {
			if !cli.env[name] && !injectedEnvRe.MatchString(name) {
				t.Errorf("%s: aemproxy reads no variable %s", f, name)
			}
		}
	}
}

// TestDocsLinks checks that relative links in the docs and the README lead
// to files that exist.
func TestDocsLinks(t *testing.T) {
	linkRe := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range append(docFiles(t), "README.md") {
		for _, m := range linkRe.FindAllStringSubmatch(readRepoFile(t, f), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p := path.Join(path.Dir(f), target)
			if _, err := os.Stat(repoPath(p)); err != nil {
				t.Errorf("%s: link %s: %v", f, m[1], err)
			}
		}
	}
}

var testNameRe = regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)(\\*?)`")

// TestSecurityModelNamesRealTests keeps docs/security.md's threat-to-test
// map honest: every test or fuzz target it names (a trailing * names a
// family) is a function in some _test.go file of the module.
func TestSecurityModelNamesRealTests(t *testing.T) {
	doc := readRepoFile(t, "docs/security.md")
	var funcs []string
	err := filepath.WalkDir(repoRoot, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			funcs = append(funcs, string(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(funcs, "\n")
	names := testNameRe.FindAllStringSubmatch(doc, -1)
	if len(names) < 20 {
		t.Fatalf("docs/security.md names %d tests; the map looks broken", len(names))
	}
	for _, m := range names {
		want := "\nfunc " + m[1]
		if m[2] == "" {
			want += "("
		}
		if !strings.Contains(all, want) {
			t.Errorf("docs/security.md names %s, which no _test.go file defines", m[1]+m[2])
		}
	}
}
