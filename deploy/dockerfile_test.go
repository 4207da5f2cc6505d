package deploy

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// copySources splits a COPY instruction's arguments into sources and
// destination.
func copySources(t *testing.T, in instruction) (srcs []string, dest string) {
	t.Helper()
	f := strings.Fields(in.args)
	if len(f) < 2 || strings.HasPrefix(in.args, "[") {
		t.Fatalf("Dockerfile:%d: COPY %q: want COPY SRC... DEST", in.line, in.args)
	}
	return f[:len(f)-1], f[len(f)-1]
}

// TestDockerfileCopySources checks that every file the Dockerfile copies
// exists: from the build context, in the repository and not excluded by
// .dockerignore (for a directory, every Go source the build needs in it);
// from an earlier stage, written by that stage or part of its base image.
func TestDockerfileCopySources(t *testing.T) {
	stages := parseDockerfile(t)
	rules := dockerignore(t)
	byName := map[string]*stage{}
	for i := range stages {
		s := &stages[i]
		for _, in := range s.all("COPY") {
			srcs, _ := copySources(t, in)
			from, ok := in.flag("from")
			if !ok {
				for _, src := range srcs {
					checkContextSource(t, rules, in.line, src)
				}
				continue
			}
			fromStage := byName[from]
			if fromStage == nil {
				t.Errorf("Dockerfile:%d: COPY --from=%s: no earlier stage of that name", in.line, from)
				continue
			}
			for _, src := range srcs {
				if !producedBy(fromStage, src) {
					t.Errorf("Dockerfile:%d: COPY --from=%s %s: no RUN of stage %s writes it, and it is not in its base image %s", in.line, from, src, from, fromStage.base)
				}
			}
		}
		if s.name != "" {
			byName[s.name] = s
		}
	}
}

func checkContextSource(t *testing.T, rules []ignoreRule, line int, src string) {
	t.Helper()
	rel := strings.TrimPrefix(path.Clean(src), "/")
	fi, err := os.Stat(repoPath(rel))
	if err != nil {
		t.Errorf("Dockerfile:%d: COPY %s: %v", line, src, err)
		return
	}
	if !fi.IsDir() {
		if excluded(rules, rel) {
			t.Errorf("Dockerfile:%d: COPY %s: .dockerignore excludes it from the build context", line, src)
		}
		return
	}
	n := 0
	err = filepath.WalkDir(repoPath(rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		r, _ := filepath.Rel(repoRoot, p)
		r = filepath.ToSlash(r)
		if excluded(rules, r) {
			t.Errorf("Dockerfile:%d: COPY %s: .dockerignore excludes %s, which the build needs", line, src, r)
		}
		n++
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if n == 0 {
		t.Errorf("Dockerfile:%d: COPY %s: a directory with no Go sources", line, src)
	}
}

// baseImageFiles are files the build stage's base image (golang, on Debian)
// is known to have.
var baseImageFiles = map[string]string{
	"/etc/ssl/certs/ca-certificates.crt": "golang:",
}

// producedBy reports whether a RUN of s writes src, or s's base image has
// it.
func producedBy(s *stage, src string) bool {
	if prefix, ok := baseImageFiles[src]; ok && strings.HasPrefix(s.base, prefix) {
		return true
	}
	writes := regexp.MustCompile(`(?:-o|>)\s*` + regexp.QuoteMeta(src) + `(?:\s|$)`)
	for _, in := range s.all("RUN") {
		if writes.MatchString(in.args) {
			return true
		}
	}
	return false
}

// TestDockerfileRuntimeImage checks the final stage: a digest-pinned or
// empty base, a numeric non-root USER that has a passwd entry, the listen
// addresses set explicitly to all interfaces on the EXPOSEd ports, an
// exec-form ENTRYPOINT naming the copied binary, and no HEALTHCHECK.
func TestDockerfileRuntimeImage(t *testing.T) {
	stages := parseDockerfile(t)
	img := finalImage(t, stages)
	final := stages[len(stages)-1]

	if img.base != "scratch" && !strings.Contains(img.base, "@sha256:") {
		t.Errorf("final base %q: want scratch or an image pinned by digest (name@sha256:...)", img.base)
	}
	switch {
	case img.user == "":
		t.Error("final stage has no USER: the container would run as root")
	case img.uid < 0 || img.gid < 0:
		t.Errorf("USER %s: want numeric uid:gid, so that Kubernetes runAsNonRoot can verify it", img.user)
	case img.uid == 0 || img.gid == 0:
		t.Errorf("USER %s: want a non-root user and group", img.user)
	}
	if img.base == "scratch" {
		// scratch has no /etc/passwd of its own: the build stage writes one.
		entry := regexp.MustCompile(`(?m)\b[a-z][a-z0-9_-]*:x:` + strconv.Itoa(img.uid) + `:` + strconv.Itoa(img.gid) + `:`)
		found := false
		for _, s := range stages {
			for _, in := range s.all("RUN") {
				found = found || entry.MatchString(in.args)
			}
		}
		if !found {
			t.Errorf("no RUN writes a passwd entry for USER %s", img.user)
		}
		copied := map[string]bool{}
		for _, in := range final.all("COPY") {
			_, dest := copySources(t, in)
			copied[dest] = true
		}
		for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt"} {
			if !copied[f] {
				t.Errorf("scratch image: nothing is copied to %s", f)
			}
		}
	}

	var listenPorts []int
	for _, env := range []string{"AEMPROXY_LISTEN", "AEMPROXY_ADMIN_LISTEN"} {
		addr, ok := img.env[env]
		if !ok {
			t.Errorf("no ENV %s: inside a container aemproxy must be told explicitly to listen beyond loopback", env)
			continue
		}
		host, port := splitHostPort(t, "ENV "+env, addr)
		if !isUnspecified(host) {
			t.Errorf("ENV %s=%s: want all interfaces (0.0.0.0), or the port is unreachable from outside the container", env, addr)
		}
		listenPorts = append(listenPorts, port)
	}
	slices.Sort(listenPorts)
	expose := slices.Sorted(slices.Values(img.expose))
	if !slices.Equal(expose, listenPorts) {
		t.Errorf("EXPOSE %v; want the listen ports %v", expose, listenPorts)
	}

	binary := ""
	for _, in := range final.all("COPY") {
		if from, _ := in.flag("from"); from != "" {
			if srcs, dest := copySources(t, in); path.Base(srcs[0]) == "aemproxy" {
				binary = dest
			}
		}
	}
	if len(img.entrypoint) == 0 || img.entrypoint[0] != binary {
		t.Errorf("ENTRYPOINT %q: want the copied binary %q first", img.entrypoint, binary)
	}
	if img.healthchk {
		t.Error("HEALTHCHECK: leave probing to the orchestrator (/healthz, /readyz)")
	}
}

// goBuild finds the Dockerfile's go build command and the stage it runs in.
func goBuild(t *testing.T, stages []stage) (*stage, instruction) {
	t.Helper()
	for i := range stages {
		for _, in := range stages[i].all("RUN") {
			if strings.Contains(in.args, "go build") {
				return &stages[i], in
			}
		}
	}
	t.Fatal("Dockerfile: no RUN ... go build")
	return nil, instruction{}
}

// TestDockerfileBuildFlags checks the go build line asks for a static,
// reproducible binary that knows its version.
func TestDockerfileBuildFlags(t *testing.T) {
	_, in := goBuild(t, parseDockerfile(t))
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w`, "-X main.version=${VERSION}", "-X main.commit=${COMMIT}", "./cmd/aemproxy"} {
		if !strings.Contains(in.args, want) {
			t.Errorf("Dockerfile:%d: the go build line lacks %s", in.line, want)
		}
	}
}
