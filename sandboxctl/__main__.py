from sandboxctl.cli import main

main()
