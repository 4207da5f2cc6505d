package ims

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// fileWatcher reports changes to one file. It watches the file's directory,
// not the file: editors save by writing a new file and renaming it over the
// old one, and Kubernetes updates a secret volume by swapping the "..data"
// symlink the file points through (file → ..data/file → ..2026_…/file), and
// neither keeps a watch on the old inode alive. When the file is a symlink
// into another directory, that directory is watched too, and re-resolved by
// retarget after each change.
type fileWatcher struct {
	w *fsnotify.Watcher
	// dir and base are of the configured path.
	dir, base string
	// targetDir and targetBase are of the file the path resolves to, when
	// that is in another directory; "" otherwise.
	targetDir, targetBase string
}

func newFileWatcher(path string) (*fileWatcher, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("watch credentials file: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch credentials file: %w", err)
	}
	fw := &fileWatcher{w: w, dir: filepath.Dir(abs), base: filepath.Base(abs)}
	if err := w.Add(fw.dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch directory %s: %w", fw.dir, err)
	}
	fw.retarget()
	return fw, nil
}

func (fw *fileWatcher) close() { _ = fw.w.Close() }

// relevant reports whether ev may have changed the file's content: an event
// on the file itself, on the file a symlink resolves to, or on a ".."
// entry (Kubernetes' "..data" and its timestamped directories). Attribute
// changes alone are not.
func (fw *fileWatcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	dir, name := filepath.Dir(ev.Name), filepath.Base(ev.Name)
	switch {
	case dir == fw.dir:
		return name == fw.base || strings.HasPrefix(name, "..")
	case fw.targetDir != "" && dir == fw.targetDir:
		return name == fw.targetBase
	}
	return false
}

// retarget follows the path's symlinks again and moves the extra watch to
// the directory of the file they now lead to. It is safe on a nil
// *fileWatcher.
func (fw *fileWatcher) retarget() {
	if fw == nil {
		return
	}
	var dir, base string
	if resolved, err := filepath.EvalSymlinks(filepath.Join(fw.dir, fw.base)); err == nil {
		d := filepath.Dir(resolved)
		realDir, _ := filepath.EvalSymlinks(fw.dir)
		if d != fw.dir && d != realDir {
			dir, base = d, filepath.Base(resolved)
		}
	}
	if dir == fw.targetDir {
		fw.targetBase = base
		return
	}
	if fw.targetDir != "" {
		// The directory may be gone already (Kubernetes deletes the old
		// one), which removed the watch with it.
		_ = fw.w.Remove(fw.targetDir)
	}
	fw.targetDir, fw.targetBase = "", ""
	if dir != "" && fw.w.Add(dir) == nil {
		fw.targetDir, fw.targetBase = dir, base
	}
}
