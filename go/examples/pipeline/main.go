// A pipeline across languages: this Go process produces JSON values into a json channel, a
// Node.js process consumes them (`for await`), and sends one summary back through a second
// json channel. Every value arrives exactly once and in order; end() ends the stream.
//
//	go run ./examples/pipeline [-n 100000] [-shmkit /path/to/shmkit/index.js]
//
// Needs node on PATH and the shmkit npm package (found from a clone of the repository, or give
// its path with -shmkit).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	shmkit "github.com/shmkit/shmkit/go"
	"github.com/shmkit/shmkit/go/examples/internal/nodepeer"
)

type job struct {
	Seq   int     `json:"seq"`
	Value float64 `json:"value"`
	Label string  `json:"label"`
}

type summary struct {
	Count   int     `json:"count"`
	Sum     float64 `json:"sum"`
	InOrder bool    `json:"inOrder"`
	Ms      float64 `json:"ms"`
}

// consumer is the Node side: it sums the values and checks their order.
const consumer = `
const [jobsName, resultsName] = process.argv.slice(1)
const jobs = shmkit.Channel.open(jobsName)
const results = shmkit.Channel.open(resultsName)
;(async () => {
  const started = performance.now()
  let count = 0, sum = 0, inOrder = true
  for await (const job of jobs) {
    if (job.seq !== count) inOrder = false
    sum += job.value
    count++
  }
  results.send({ count, sum, inOrder, ms: performance.now() - started })
  jobs.close(); results.close()
})().catch((error) => { console.error(error); process.exit(1) })
`

func main() {
	n := flag.Int("n", 100000, "values to send")
	module := flag.String("shmkit", "", "what the Node peer requires (default: the repository's index.js, else 'shmkit')")
	flag.Parse()
	if err := run(*n, nodepeer.Module(*module)); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(n int, module string) error {
	jobsName := fmt.Sprintf("go-pipeline-jobs-%d", os.Getpid())
	resultsName := fmt.Sprintf("go-pipeline-results-%d", os.Getpid())
	opts := &shmkit.Options{AutoUnlink: true}
	jobs, err := shmkit.CreateChannelWith(jobsName, 64*1024, shmkit.CodecJSON, opts)
	if err != nil {
		return err
	}
	defer jobs.Close()
	results, err := shmkit.CreateChannelWith(resultsName, 4096, shmkit.CodecJSON, opts)
	if err != nil {
		return err
	}
	defer results.Close()

	node := nodepeer.Command(module, consumer, jobsName, resultsName)
	if err := node.Start(); err != nil {
		return fmt.Errorf("starting node: %w", err)
	}
	defer node.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	started := time.Now()
	want := 0.0
	for i := 0; i < n; i++ {
		j := job{Seq: i, Value: float64(i) * 0.5, Label: fmt.Sprintf("job-%d", i)}
		want += j.Value
		if err := jobs.SendJSON(ctx, j); err != nil {
			return err
		}
	}
	if err := jobs.End(ctx); err != nil {
		return err
	}
	var s summary
	if err := results.RecvJSON(ctx, &s); err != nil {
		return err
	}
	elapsed := time.Since(started)
	fmt.Printf("node received %d values (sum %.1f, in order: %v) in %v: %.0f values/s\n",
		s.Count, s.Sum, s.InOrder, elapsed.Round(time.Millisecond), float64(s.Count)/elapsed.Seconds())
	if s.Count != n || s.Sum != want || !s.InOrder {
		return fmt.Errorf("expected %d values summing to %.1f, in order", n, want)
	}
	return nil
}
