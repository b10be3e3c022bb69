// A tiny polyglot instance for the local runtime tests: answers with its revision.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	revision := os.Getenv("SOS_REVISION")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello from %s (go)\n", revision)
	})
	addr := os.Getenv("HOST") + ":" + os.Getenv("PORT")
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
