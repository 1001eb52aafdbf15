//go:build linux

package main

import (
	"testing"

	"github.com/shmkit/shmkit/go/examples/internal/nodepeer"
)

func TestPipelineExample(t *testing.T) {
	if err := run(20000, nodepeer.ForTest(t)); err != nil {
		t.Fatal(err)
	}
}
