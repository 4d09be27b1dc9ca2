from lstm_predictor.cli import main

main()
