package baton_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickstart builds examples/quickstart as a program of its own module that requires this
// one (the way a user's code depends on it) and runs it against batond.
func TestQuickstart(t *testing.T) {
	srv := sharedServer(t)
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("examples", "quickstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	goMod := "module example.com/quickstart\n\ngo 1.23\n\n" +
		"require github.com/baton-dev/baton/clients/go v0.0.0\n\n" +
		"replace github.com/baton-dev/baton/clients/go => " + self + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	// The module's go.sum covers every dependency, so no lookup is needed.
	sum, err := os.ReadFile("go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "BATON_TARGET="+srv.target(), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("mod", "tidy")
	out := goCmd("run", ".")
	t.Logf("quickstart output:\n%s", out)
	for _, want := range []string{
		"followed #3 planner: Left: run the backfill",
		"appended #1..#3",
		"coder's inbox: Run the backfill, then switch reads.",
		"accepted: HANDOFF_STATUS_ACCEPTED",
		"context #3 [ENTRY_KIND_MESSAGE]: Left: run the backfill",
		"session owner: coder",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("quickstart output lacks %q", want)
		}
	}
}
