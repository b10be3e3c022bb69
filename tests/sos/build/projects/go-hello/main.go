package main

import (
	"encoding/json"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host := os.Getenv("HOST")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"service": "go-hello", "path": r.URL.Path})
	})
	log.Printf("listening on %s:%s", host, port)
	log.Fatal(http.ListenAndServe(net.JoinHostPort(host, port), nil))
}
