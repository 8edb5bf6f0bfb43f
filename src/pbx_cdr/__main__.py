from pbx_cdr.cli import main

main()
