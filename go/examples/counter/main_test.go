//go:build linux

package main

import (
	"os"
	"testing"

	"github.com/shmkit/shmkit/go/examples/internal/nodepeer"
)

// The processes run() starts re-execute this test binary: with this variable set, it acts as
// the example's program.
const childEnv = "SHMKIT_COUNTER_EXAMPLE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCounterExample(t *testing.T) {
	t.Setenv(childEnv, "1")
	if err := run(20000, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := run(20000, true, nodepeer.ForTest(t)); err != nil {
		t.Fatal(err)
	}
}
