import 'reflect-metadata';
import { launch } from '@thorax/observability';
import { inferenceService } from './service';

void launch(inferenceService, process.env);
