from ilastikbackend.cli import main

main()
