module github.com/shmkit/shmkit/go

go 1.22
