package nodepeer

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ForTest is the repository's index.js for the examples' tests, which are skipped (failed with
// SHMKIT_REQUIRE_NODE=1) when node or the built package is missing.
func ForTest(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	index := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "index.js"))
	_, nodeErr := exec.LookPath("node")
	_, indexErr := os.Stat(index)
	if nodeErr != nil || indexErr != nil {
		msg := "skipping: needs `node` on PATH and the built shmkit package at " + index + " (SHMKIT_REQUIRE_NODE=1 makes this a failure)"
		if os.Getenv("SHMKIT_REQUIRE_NODE") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return index
}
