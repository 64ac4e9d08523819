from evaluator.main import main

main()
