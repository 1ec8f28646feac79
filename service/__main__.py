from service.operator.cli import main

main()
