from harness.oracle.cli import main

main()
