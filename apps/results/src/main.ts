import 'reflect-metadata';
import { launch } from '@thorax/observability';
import { resultsService } from './service';

void launch(resultsService, process.env);
