// Package nodepeer starts Node.js peers for the examples: `node -e <script>` with the shmkit
// package required by path.
package nodepeer

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
)

// Module is what the Node peer passes to require(): the flag's value if set, else the index.js
// of the shmkit package found in the working directory or one of its parents (a clone of the
// repository, where the examples live), else "shmkit" (an installed package).
func Module(flag string) string {
	if flag != "" {
		return flag
	}
	dir, err := os.Getwd()
	for err == nil {
		var pkg struct{ Name string }
		if b, e := os.ReadFile(filepath.Join(dir, "package.json")); e == nil && json.Unmarshal(b, &pkg) == nil && pkg.Name == "shmkit" {
			if _, e := os.Stat(filepath.Join(dir, "index.js")); e == nil {
				return filepath.Join(dir, "index.js")
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "shmkit"
}

// Command is `node -e <script> -- args...`, the script prefixed with
// `const shmkit = require(<module>)`; its output goes to this process's.
func Command(module, script string, args ...string) *exec.Cmd {
	m, _ := json.Marshal(module)
	full := "const shmkit = require(" + string(m) + ");\n" + script
	cmd := exec.Command("node", append([]string{"-e", full, "--"}, args...)...)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	return cmd
}
