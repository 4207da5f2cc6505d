package deploy

import (
	"regexp"
	"strings"
	"testing"
)

// readmeTestCommand is the test command in the README's Quick start.
func readmeTestCommand(t *testing.T) string {
	t.Helper()
	readme := readRepoFile(t, "README.md")
	_, quick, ok := strings.Cut(readme, "## Quick start")
	if !ok {
		t.Fatal("README.md has no Quick start")
	}
	m := regexp.MustCompile("(?m)^(go test[^#\n]*?)\\s*(#|$)").FindStringSubmatch(quick)
	if m == nil {
		t.Fatal("README.md's Quick start has no go test command")
	}
	return m[1]
}

// TestCIRunsTheReadmeTestCommand checks that .ci/run ends with the README's
// test command, that make test runs the same, and that .ci/run and the
// Makefile pin the same staticcheck.
func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	want := readmeTestCommand(t)
	ci := readRepoFile(t, ".ci/run")
	var last string
	for _, line := range strings.Split(ci, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	if last != want {
		t.Errorf(".ci/run ends with %q; want the README's test command %q", last, want)
	}
	mk := readRepoFile(t, "Makefile")
	if !regexp.MustCompile(`(?m)^test:\n\t` + regexp.QuoteMeta(want) + `$`).MatchString(mk) {
		t.Errorf("make test does not run %q", want)
	}

	ciVer := regexp.MustCompile(`(?m)^STATICCHECK_VERSION=(\S+)$`).FindStringSubmatch(ci)
	mkVer := regexp.MustCompile(`(?m)^STATICCHECK_VERSION\s*:?=\s*(\S+)$`).FindStringSubmatch(mk)
	switch {
	case ciVer == nil || mkVer == nil:
		t.Error("want STATICCHECK_VERSION pinned in both .ci/run and the Makefile")
	case ciVer[1] != mkVer[1]:
		t.Errorf("staticcheck %s in .ci/run, %s in the Makefile", ciVer[1], mkVer[1])
	}
}
