module example.com/services/go-hello

go 1.19
