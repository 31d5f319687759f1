module example.com/runoff-example

go 1.19
