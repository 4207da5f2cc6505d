//go:build linux

package deploy

import (
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestDockerfileBuildsStaticBinary runs the Dockerfile's build stage
// without a container engine: it lays out the build context the way the
// stage's COPY lines do (through .dockerignore), runs the go build line with
// sh as RUN would, then checks that the binary is static (no dynamic loader,
// no shared libraries, no symbols) and that it runs, with an empty
// environment, as the image's non-root USER, printing the version and commit
// it was built with.
func TestDockerfileBuildsStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds aemproxy")
	}
	stages := parseDockerfile(t)
	st, run := goBuild(t, stages)
	rules := dockerignore(t)
	root := t.TempDir()
	host := func(p string) string { return filepath.Join(root, filepath.FromSlash(p)) }

	const version, commit = "v0.0.0-dockerfile-test", "0123456789abcdef0123456789abcdef01234567"
	env := map[string]string{}
	workdir := "/"
	for _, in := range st.instrs {
		if in.line >= run.line {
			break
		}
		switch in.cmd {
		case "WORKDIR":
			workdir = path.Join(workdir, in.args)
		case "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			env[name] = def
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		case "COPY":
			if _, ok := in.flag("from"); ok {
				continue
			}
			srcs, dest := copySources(t, in)
			intoDir := strings.HasSuffix(dest, "/") || dest == "." || len(srcs) > 1
			if !path.IsAbs(dest) {
				dest = path.Join(workdir, dest)
			}
			for _, src := range srcs {
				copyContext(t, rules, strings.TrimPrefix(path.Clean(src), "/"), host(dest), intoDir)
			}
		}
	}
	// What BuildKit and the test's own build would set.
	env["VERSION"], env["COMMIT"] = version, commit
	env["TARGETOS"], env["TARGETARCH"] = "linux", runtime.GOARCH

	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(run.args)
	if out == nil || !path.IsAbs(out[1]) {
		t.Fatalf("Dockerfile:%d: the go build line needs -o /absolute/path", run.line)
	}
	binary := host(out[1])
	script := strings.Replace(run.args, out[0], "-o "+binary, 1)
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = host(workdir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Dockerfile:%d: the build stage's go build failed in a context laid out like the image's: %v\n%s", run.line, err, b)
	}

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked and would not start on scratch", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	for _, s := range []string{".interp", ".dynamic", ".symtab", ".debug_info"} {
		if f.Section(s) != nil {
			t.Errorf("binary has a %s section; want a static binary built with -s -w", s)
		}
	}

	img := finalImage(t, stages)
	ver := exec.Command(binary, "version")
	ver.Env = []string{} // scratch: nothing but what the image sets
	if os.Geteuid() == 0 && img.uid > 0 {
		// Run it as the image's user, which needs to reach the binary.
		for d := filepath.Dir(binary); strings.HasPrefix(d, filepath.Dir(root)); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ver.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(img.uid), Gid: uint32(img.gid)}}
	} else if os.Geteuid() == 0 {
		t.Errorf("the image's USER %q is not a numeric non-root uid", img.user)
	}
	b, err := ver.CombinedOutput()
	if err != nil {
		t.Fatalf("aemproxy version as uid %d: %v\n%s", img.uid, err, b)
	}
	for _, want := range []string{"aemproxy " + version, "commit " + commit, runtime.Version()} {
		if !strings.Contains(string(b), want) {
			t.Errorf("aemproxy version printed %q; want %q in it", b, want)
		}
	}
}

// copyContext copies src (relative to the repository, which is the build
// context) to dst like COPY: a directory's contents go into dst; a file
// goes to dst, or into it when intoDir. Excluded paths are left out.
func copyContext(t *testing.T, rules []ignoreRule, src, dst string, intoDir bool) {
	t.Helper()
	fi, err := os.Stat(repoPath(src))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() {
		if intoDir {
			dst = filepath.Join(dst, path.Base(src))
		}
		if !excluded(rules, src) {
			copyFile(t, repoPath(src), dst)
		}
		return
	}
	err = filepath.WalkDir(repoPath(src), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, p)
		if excluded(rules, filepath.ToSlash(rel)) {
			return nil
		}
		inner, _ := filepath.Rel(repoPath(src), p)
		copyFile(t, p, filepath.Join(dst, inner))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
